import express, { type NextFunction, type Request, type Response } from 'express';
import { ApiError, errorBody } from '../../common/errors/api-error';
import { idempotentRequestId, newRequestId } from '../../common/ids/request-id';
import { checkJsonDepth, decodeUtf8, type JsonLimits } from '../../common/json/limits';
import type { Logger } from '../../common/log/logger';
import { describeClientError } from '../../common/http/client-error';
import { parseListQuery } from '../../common/http/list-query';
import type { ReplyEnvelope } from '../../common/queue/envelope';
import type { GatewayMetrics } from '../metrics';
import { admissionMiddleware, type AdmissionControl } from './admission';
import { bodyDeadlineMiddleware } from './body-deadline';
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

/**
 * The gateway's API behind nginx (which terminates TLS and applies body, header and rate
 * limits first). It checks what it can without trusting itself — content type, UTF-8,
 * JSON well-formedness, depth, names — assigns the request id, queues the request and
 * answers with whatever core decided. It never sees a database and holds no credential
 * that could read one.
 */
export function createApp(deps: AppDeps): express.Express {
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
    res.setHeader('x-request-id', request.id);
    const end = deps.metrics.requestSeconds.startTimer({ method: request.method });
    const reply = await deps.submit(request, deps.requestTimeoutMs);
    end();
    // nginx writes the access line (with this request id) for every request; the app's own
    // per-request line is debug-level: at load it was a tenth of the gateway's CPU.
    deps.log.debug('request done', { requestId: request.id, method: request.method, collection: request.collection, status: reply.status });
    res.status(reply.status).json(reply.body);
  };

  app.post('/v1/records/:collection', rawBody, async (req, res) => {
    const token = bearerToken(req.get('authorization'));
    const collection = collectionParam(req.params.collection);
    requireJsonContentType(req.get('content-type'));
    const key = idempotencyKey(req.get('idempotency-key'));
    const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const text = decodeUtf8(bytes);
    checkJsonDepth(text, deps.limits.maxDepth);
    try {
      JSON.parse(text);
    } catch {
      throw new ApiError('badJson', 'body is not valid JSON');
    }
    if (key === undefined) return enqueue(res, { id: newRequestId(), method: 'POST', collection, token, body: text });
    // A retry with the same key gets the same request id, so one still in flight is joined.
    await enqueue(res, { id: idempotentRequestId(token, collection, key), method: 'POST', collection, token, body: text, key });
  });

  app.get('/v1/records/:collection/:id', async (req, res) => {
    const token = bearerToken(req.get('authorization'));
    const collection = collectionParam(req.params.collection);
    const recordId = recordIdParam(req.params.id);
    await enqueue(res, { id: newRequestId(), method: 'GET', collection, recordId, token });
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
    const token = bearerToken(req.get('authorization'));
    const collection = collectionParam(req.params.collection);
    const recordId = recordIdParam(req.params.id);
    await enqueue(res, { id: newRequestId(), method: 'DELETE', collection, recordId, token });
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
