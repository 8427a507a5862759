import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ApiError, errorBody } from '../../common/errors/api-error';
import { ErrorCodes } from '../../common/errors/codes';
import { idempotentRequestId, newRequestId } from '../../common/ids/request-id';
import { checkJsonDepth, decodeUtf8, type JsonLimits } from '../../common/json/limits';
import type { Logger } from '../../common/log/logger';
import { describeClientError } from '../../common/http/client-error';
import { parseListQuery } from '../../common/http/list-query';
import type { ReplyEnvelope } from '../../common/queue/envelope';
import type { GatewayMetrics } from '../metrics';
import { admissionMiddleware, refusalBody, releaseOnClose, RETRY_AFTER_SECONDS, type AdmissionControl } from './admission';
import { answerBodyTimeout, bodyDeadlineMiddleware, bodyTimeoutMessage } from './body-deadline';
import { leanRoute, readBoundedBody, sendJson } from './lean-route';
import type { QueueRequest } from '../queue/dispatcher';
import { bearerToken, collectionParam, idempotencyKey, recordIdParam, requireJsonContentType } from './request-parsing';

export interface AppDeps {
  gatewayId: string;
  limits: JsonLimits;
  requestTimeoutMs: number;
  /** A body not whole this long after its headers is answered 408 (body-deadline.ts). */
  bodyTimeoutMs: number;
  submit: (request: QueueRequest, timeoutMs: number) => Promise<ReplyEnvelope>;
  admission: AdmissionControl;
  metrics: GatewayMetrics;
  log: Logger;
}

/** The app: a node:http request listener, and a listen() as Express's. */
export interface GatewayApp {
  (req: IncomingMessage, res: ServerResponse): void;
  listen(port: number, host: string, callback: () => void): Server;
}

type HeaderGetter = (name: string) => string | undefined;

/** The queue request of a POST, from its headers, collection segment and body; throws the client's error. */
function postRequest(get: HeaderGetter, collectionSegment: unknown, body: Buffer, maxDepth: number): QueueRequest {
  const token = bearerToken(get('authorization'));
  const collection = collectionParam(collectionSegment);
  requireJsonContentType(get('content-type'));
  const key = idempotencyKey(get('idempotency-key'));
  const text = decodeUtf8(body);
  checkJsonDepth(text, maxDepth);
  try {
    JSON.parse(text);
  } catch {
    throw new ApiError('badJson', 'body is not valid JSON');
  }
  if (key === undefined) return { id: newRequestId(), method: 'POST', collection, token, body: text };
  // A retry with the same key gets the same request id, so one still in flight is joined.
  return { id: idempotentRequestId(token, collection, key), method: 'POST', collection, token, body: text, key };
}

function recordRequest(method: 'GET' | 'DELETE', get: HeaderGetter, collectionSegment: unknown, idSegment: unknown): QueueRequest {
  const token = bearerToken(get('authorization'));
  const collection = collectionParam(collectionSegment);
  const recordId = recordIdParam(idSegment);
  return { id: newRequestId(), method, collection, recordId, token };
}

/**
 * The gateway's API behind nginx (which terminates TLS and applies body, header and rate
 * limits first). It checks what it can without trusting itself — content type, UTF-8,
 * JSON well-formedness, depth, names — assigns the request id, queues the request and
 * answers with whatever core decided. It never sees a database and holds no credential
 * that could read one. A POST of a record and a GET of one are answered on node:http
 * alone (lean-route.ts); every other request by the Express app, with the same answers.
 */
export function createApp(deps: AppDeps): GatewayApp {
  const fallback = createExpressApp(deps);
  const maxBodyBytes = deps.limits.maxBytes;
  const timeoutMessage = bodyTimeoutMessage(deps.bodyTimeoutMs);

  const fail = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    const { status, code, message } = describeClientError(err);
    // The lean path takes no query string, so the URL is the path Express would log.
    if (status >= 500) deps.log.warn('request failed', { code, status, path: req.url });
    if (res.headersSent) return void res.end();
    sendJson(res, status, errorBody(code, message));
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const route = leanRoute(req, maxBodyBytes);
    if (route === undefined) return void fallback(req, res);
    const admission = deps.admission.tryAdmit(route.method === 'POST' ? route.contentLength : 0);
    let timer: NodeJS.Timeout | undefined;
    // One listener for what Express's path does in three: count the answer, stop the body
    // deadline, give the admission share back.
    res.once('close', () => {
      if (res.writableFinished) deps.metrics.requests.inc({ method: req.method, status: String(res.statusCode) });
      if (timer !== undefined) clearTimeout(timer);
      if (admission.admitted) releaseOnClose(req, res, admission.release, deps.requestTimeoutMs);
    });
    if (!admission.admitted) {
      res.setHeader('retry-after', String(RETRY_AFTER_SECONDS));
      return void sendJson(res, ErrorCodes.overloaded.status, refusalBody(admission.refusal));
    }
    const get: HeaderGetter = (name) => req.headers[name] as string | undefined;
    let answered: Promise<void>;
    if (route.method === 'POST') {
      timer = setTimeout(() => answerBodyTimeout(req, res, timeoutMessage), deps.bodyTimeoutMs);
      answered = readBoundedBody(req, maxBodyBytes, route.contentLength).then(async (body) => {
        const reply = await submitted(deps, res, postRequest(get, route.collection, body, deps.limits.maxDepth));
        sendJson(res, reply.status, reply.body);
      });
    } else {
      answered = (async () => {
        const reply = await submitted(deps, res, recordRequest('GET', get, route.collection, route.recordId));
        sendJson(res, reply.status, reply.body);
      })();
    }
    answered.catch((err: unknown) => fail(req, res, err));
  };

  return Object.assign(handle, {
    listen: (port: number, host: string, callback: () => void): Server => createServer(handle).listen(port, host, callback),
  });
}

/** Queues a request and waits for its reply; the request id goes on the answer first. */
async function submitted(deps: AppDeps, res: ServerResponse, request: QueueRequest): Promise<ReplyEnvelope> {
  res.setHeader('x-request-id', request.id);
  const end = deps.metrics.requestSeconds.startTimer({ method: request.method });
  const reply = await deps.submit(request, deps.requestTimeoutMs);
  end();
  // nginx writes the access line (with this request id) for every request; the app's own
  // per-request line is debug-level: at load it was a tenth of the gateway's CPU.
  deps.log.debug('request done', { requestId: request.id, method: request.method, collection: request.collection, status: reply.status });
  return reply;
}

/** Every request the lean path does not take: unknown paths, other methods, HEAD, LIST, DELETE, odd bodies. */
function createExpressApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('trust proxy', 'loopback');
  // No route reads req.query (see the list route): nothing parsed from a URL can become an object.
  app.set('query parser', false);

  app.use((req, res, next) => {
    res.on('finish', () => deps.metrics.requests.inc({ method: req.method, status: String(res.statusCode) }));
    next();
  });
  // Before any body is read: past the pending limits a request is refused from its headers.
  app.use(admissionMiddleware(deps.admission, { maxBodyBytes: deps.limits.maxBytes, holdAfterAbortMs: deps.requestTimeoutMs }));
  // An admitted body must then arrive whole in bounded time, or it holds its share for as long as it trickles.
  app.use(bodyDeadlineMiddleware(deps.bodyTimeoutMs));

  // No Content-Encoding: a compressed body is refused (415), never inflated.
  const rawBody = express.raw({ type: () => true, limit: deps.limits.maxBytes, inflate: false });

  const enqueue = async (res: Response, request: QueueRequest): Promise<void> => {
    const reply = await submitted(deps, res, request);
    res.status(reply.status).json(reply.body);
  };

  app.post('/v1/records/:collection', rawBody, async (req, res) => {
    await enqueue(res, postRequest((name) => req.get(name), req.params.collection, Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), deps.limits.maxDepth));
  });

  app.get('/v1/records/:collection/:id', async (req, res) => {
    await enqueue(res, recordRequest('GET', (name) => req.get(name), req.params.collection, req.params.id));
  });

  // The query is read from the URL's own text, never from req.query: Express's parser
  // turns a repeated parameter into an array (and other parsers `a[$ne]=x` into an object).
  app.get('/v1/records/:collection', async (req, res) => {
    const token = bearerToken(req.get('authorization'));
    const collection = collectionParam(req.params.collection);
    const query = parseListQuery(req.originalUrl);
    await enqueue(res, { id: newRequestId(), method: 'LIST', collection, token, query });
  });

  app.delete('/v1/records/:collection/:id', async (req, res) => {
    await enqueue(res, recordRequest('DELETE', (name) => req.get(name), req.params.collection, req.params.id));
  });

  app.all('/v1/records/:collection', (_req, res) => {
    res.setHeader('allow', 'GET, POST');
    throw new ApiError('methodNotAllowed', 'use GET or POST');
  });
  app.all('/v1/records/:collection/:id', (_req, res) => {
    res.setHeader('allow', 'GET, DELETE');
    throw new ApiError('methodNotAllowed', 'use GET or DELETE');
  });
  app.use(() => {
    throw new ApiError('notFound', 'no such endpoint');
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, code, message } = describeClientError(err);
    if (status >= 500) deps.log.warn('request failed', { code, status, path: req.path });
    if (res.headersSent) return void res.end();
    res.status(status).json(errorBody(code, message));
  });

  return app;
}
