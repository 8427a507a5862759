/**
 * The two requests the gateway answers most, a POST of a record and a GET of one, on
 * node:http alone (issue 13: a lean gateway route). Through Express each cost about 100 µs
 * of the gateway's CPU more than the same checks here (bench/gateway-route.ts): the app's
 * per-request prototype swap and router walk, body-parser's stream setup, res.json's
 * content negotiation, three 'close'/'finish' listeners. Only requests whose answer is
 * plain take this path: the exact path text (no query, no percent-escape, no trailing
 * slash), a GET without a body or a conditional header, a POST with a Content-Length within
 * the limit and no Content-Encoding. Everything else (404, 405, HEAD, chunked or encoded
 * bodies, If-None-Match, odd spellings of the path) goes to the Express app as before, so
 * what a client sees never depends on which path answered.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/** A request body that could not be read whole: shaped as body-parser's errors are, so describeClientError answers it alike. */
export class BodyReadError extends Error {
  constructor(
    readonly status: 400 | 413,
    readonly type: 'entity.too.large' | 'request.aborted' | 'request.size.invalid',
    message: string,
  ) {
    super(message);
    this.name = 'BodyReadError';
  }
}

/**
 * The body of `stream`, at most `limit` bytes. Past the limit it stops keeping bytes but
 * reads on to the end before it fails (as body-parser does), so a kept-alive connection is
 * left at the next request. With `expectedLength`, a body of any other length fails.
 */
export function readBoundedBody(stream: Readable, limit: number, expectedLength?: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (err: BodyReadError | undefined, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', onClose);
      if (err) reject(err);
      else resolve(body!);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received <= limit) chunks.push(chunk);
    };
    const onEnd = (): void => {
      if (received > limit) return finish(new BodyReadError(413, 'entity.too.large', 'request entity too large'));
      if (expectedLength !== undefined && received !== expectedLength) return finish(new BodyReadError(400, 'request.size.invalid', 'request size did not match content length'));
      finish(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    // 'close' before 'end' (or an error): the client went away mid-body.
    const onClose = (): void => finish(new BodyReadError(400, 'request.aborted', 'request aborted'));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onClose);
    stream.once('error', onClose);
  });
}

/**
 * What Express's res.status(s).json(body) writes for a request that is neither HEAD nor
 * conditional: the same headers in the same order and spelling, the same bytes.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  // Express refuses a status it cannot write the same way (RangeError/TypeError, answered 500).
  if (!Number.isInteger(status)) throw new TypeError(`Invalid status code: ${JSON.stringify(status)}. Status code must be an integer.`);
  if (status < 100 || status > 999) throw new RangeError(`Invalid status code: ${JSON.stringify(status)}. Status code must be greater than 99 and less than 1000.`);
  res.statusCode = status;
  if (status === 204 || status === 304) {
    // res.send drops the entity headers and body of these two.
    res.end();
    return;
  }
  const text = JSON.stringify(body) as string | undefined;
  // res.set runs the type through mime-types, which adds the charset even with no body.
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  if (status === 205) {
    res.setHeader('Content-Length', '0');
    res.end();
  } else if (text === undefined) {
    // res.json(undefined): headers only (node adds Content-Length: 0).
    res.end();
  } else {
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text, 'utf8');
  }
}

const EXACT_PATH = /^\/v1\/records\/([^/?%#]+)(?:\/([^/?%#]+))?$/;

export type LeanRoute = { method: 'POST'; collection: string; contentLength: number } | { method: 'GET'; collection: string; recordId: string };

/**
 * The route table of this path: which requests it answers, from the request line and
 * headers alone; undefined sends the request to the Express app.
 */
export function leanRoute(req: IncomingMessage, maxBodyBytes: number): LeanRoute | undefined {
  const m = EXACT_PATH.exec(req.url ?? '');
  if (!m) return undefined;
  const h = req.headers;
  if (req.method === 'POST' && m[2] === undefined) {
    if (h['content-encoding'] !== undefined || h['transfer-encoding'] !== undefined) return undefined;
    const declared = h['content-length'];
    if (declared === undefined || !/^\d{1,15}$/.test(declared)) return undefined;
    const contentLength = Number(declared);
    return contentLength <= maxBodyBytes ? { method: 'POST', collection: m[1]!, contentLength } : undefined;
  }
  if (req.method === 'GET' && m[2] !== undefined) {
    if (h['content-length'] !== undefined || h['transfer-encoding'] !== undefined) return undefined;
    if (h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) return undefined;
    return { method: 'GET', collection: m[1]!, recordId: m[2] };
  }
  return undefined;
}
