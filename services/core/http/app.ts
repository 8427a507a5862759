import type { TLSSocket } from 'node:tls';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ApiError, errorBody } from '../../common/errors/api-error';
import { isCollectionName, isRequestId, TOKEN_SHAPE } from '../../common/ids/names';
import { DEFAULT_JSON_LIMITS, decodeUtf8, parseJsonRecord } from '../../common/json/limits';
import type { Logger } from '../../common/log/logger';
import { normalizeSerial } from '../../common/pki/crl';
import { describeClientError } from '../../common/http/client-error';
import { parseListQuery } from '../../common/http/list-query';
import { RECORD_BATCH_MAX_BYTES, RECORD_BATCH_PATH } from '../../common/http/record-batch';
import type { TokenStore } from '../auth/tokens';
import type { ClientIdentity } from './client-identity';
import { DEFAULT_REQUEST_BUDGET_MS } from '../config';
import { Deadline } from '../storage/deadline';
import { keyedRecordId } from '../storage/record-id';
import type { RecordStore } from '../storage/records';
import { parseRecordBatch, storeRecordBatch } from './batch-route';
import { idempotencyKey, requestBudgetMs } from './headers';

export interface CoreAppDeps {
  /** Which client certificates may use core (client-identity.ts). */
  clients: Pick<ClientIdentity, 'generation' | 'refusal'>;
  records: RecordStore;
  tokens: TokenStore;
  maxBodyBytes: number;
  /** The budget of a request without x-request-budget-ms. */
  defaultBudgetMs?: number;
  log: Logger;
}

interface Locals {
  deadline: Deadline;
}

function bearer(req: Request): string {
  const m = /^Bearer ([^\s]+)$/.exec(req.get('authorization') ?? '');
  if (!m || !TOKEN_SHAPE.test(m[1]!)) throw new ApiError('unauthenticated', 'missing or malformed bearer token');
  return m[1]!;
}

function collectionOf(req: Request): string {
  const c = req.params.collection;
  if (!isCollectionName(c)) throw new ApiError('badCollection', 'invalid collection name');
  return c;
}

/**
 * Core's storage API. TLS with a client certificate from the deployment CA is enforced by
 * the server (a client without one never gets here); this app additionally requires the
 * certificate to be meant for client authentication, to name a broker core knows and not
 * to be revoked (client-identity.ts). It re-checks names and the body
 * (no tier trusts the one before it), authenticates the token, authorizes the collection
 * and scope, and stores idempotently: under x-request-id, or under an id derived from the
 * token's client and the Idempotency-Key when the client sent one, so a retry with a
 * rotated token lands on the same record. Every database call of a request stays inside
 * its budget (x-request-budget-ms, counted from when its headers arrived); when that runs
 * out the answer is 504 deadline_exceeded and a call still waiting for a connection is
 * dropped, never sent later.
 */
export function createCoreApp(deps: CoreAppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // No route reads req.query: nothing parsed from a URL can become an object.
  app.set('query parser', false);

  // Decided once per TLS connection, and again after the identity files changed (a broker
  // revoked while its keep-alive connection stays open): getPeerCertificate() builds a
  // fresh object on every call, and per request it was the largest single cost in core's profile.
  const clientChecked = new WeakMap<object, { generation: number; refusal: string | undefined }>();
  app.use((req, _res, next) => {
    const socket = req.socket as TLSSocket;
    let checked = clientChecked.get(socket);
    if (checked?.generation !== deps.clients.generation) {
      const first = checked === undefined;
      checked = { generation: deps.clients.generation, refusal: deps.clients.refusal(socket) };
      clientChecked.set(socket, checked);
      // Once per connection: which client certificate each broker connects with (a certificate rotation's evidence).
      if (first) {
        const cert = socket.getPeerCertificate?.();
        deps.log.info('client connection', { broker: cert?.subject?.CN, serial: cert?.serialNumber ? normalizeSerial(cert.serialNumber) : undefined, refused: checked.refusal });
      }
    }
    if (checked.refusal !== undefined) return next(new ApiError('forbidden', checked.refusal));
    next();
  });

  // Before the body is read: reading it is part of the request's time.
  const defaultBudgetMs = deps.defaultBudgetMs ?? DEFAULT_REQUEST_BUDGET_MS;
  app.use(['/v1/records', RECORD_BATCH_PATH], (req, res, next) => {
    const deadline = new Deadline(requestBudgetMs(req.get('x-request-budget-ms'), defaultBudgetMs));
    res.once('close', () => deadline.dispose());
    (res.locals as Locals).deadline = deadline;
    next();
  });

  // No Content-Encoding: a compressed body is refused (415), never inflated.
  const rawBody = express.raw({ type: () => true, limit: deps.maxBodyBytes, inflate: false });
  const batchBody = express.raw({ type: () => true, limit: RECORD_BATCH_MAX_BYTES, inflate: false });

  // Group commit from the broker (common/http/record-batch.ts): one answer per record.
  app.post(RECORD_BATCH_PATH, batchBody, async (req, res) => {
    if (!(req.get('content-type') ?? '').toLowerCase().startsWith('application/json')) throw new ApiError('unsupportedMediaType', 'Content-Type must be application/json');
    const items = parseRecordBatch(decodeUtf8(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)));
    const results = await storeRecordBatch(deps, items, (res.locals as Locals).deadline);
    deps.log.debug('record batch stored', { records: items.length, stored: results.filter((r) => r.status === 201).length });
    res.status(200).json({ results });
  });

  app.post('/v1/records/:collection', rawBody, async (req, res) => {
    const collection = collectionOf(req);
    const requestId = req.get('x-request-id');
    if (!isRequestId(requestId)) throw new ApiError('badRequest', 'X-Request-Id must be a UUID');
    const key = idempotencyKey(req.get('idempotency-key'));
    const token = bearer(req);
    if (!(req.get('content-type') ?? '').toLowerCase().startsWith('application/json')) throw new ApiError('unsupportedMediaType', 'Content-Type must be application/json');
    // Strict: invalid UTF-8 is refused, not stored with U+FFFD in its place.
    const text = decodeUtf8(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    const record = parseJsonRecord(text, { ...DEFAULT_JSON_LIMITS, maxBytes: deps.maxBodyBytes });
    const { deadline } = res.locals as Locals;
    const grant = await deps.tokens.authorize(token, collection, 'write', { deadline });
    const id = key === undefined ? requestId : keyedRecordId(grant.client, collection, key);
    const created = await deps.records.insert({ _id: id, collection, client: grant.client, tokenId: grant.id, data: record }, { deadline });
    // Per-request lines at debug: each one costs a synchronous write, and at load they were
    // a tenth of the process's CPU.
    deps.log.debug('record stored', { requestId, id, collection, tokenId: grant.id, replay: !created });
    res.status(201).json({ id });
  });

  app.get('/v1/records/:collection/:id', async (req, res) => {
    const collection = collectionOf(req);
    const id = req.params.id;
    if (!isRequestId(id)) throw new ApiError('badRecordId', 'record ids are UUIDs');
    const token = bearer(req);
    const { deadline } = res.locals as Locals;
    await deps.tokens.authorize(token, collection, 'read', { deadline });
    const record = await deps.records.get(collection, id, { deadline });
    if (!record) throw new ApiError('notFound', 'no such record');
    res.status(200).json(record);
  });

  // The query is read from the URL's own text, never from req.query (see the gateway's list route).
  app.get('/v1/records/:collection', async (req, res) => {
    const collection = collectionOf(req);
    const query = parseListQuery(req.originalUrl);
    const token = bearer(req);
    const { deadline } = res.locals as Locals;
    await deps.tokens.authorize(token, collection, 'read', { deadline });
    const page = await deps.records.list(collection, query, { deadline });
    res.status(200).json(page);
  });

  app.delete('/v1/records/:collection/:id', async (req, res) => {
    const collection = collectionOf(req);
    const id = req.params.id;
    if (!isRequestId(id)) throw new ApiError('badRecordId', 'record ids are UUIDs');
    const token = bearer(req);
    const { deadline } = res.locals as Locals;
    const grant = await deps.tokens.authorize(token, collection, 'delete', { deadline });
    const erased = await deps.records.erase(collection, id, { deadline });
    const requestId = req.get('x-request-id');
    // At info: an erasure is an audit event (ids and the token's id only, never content).
    deps.log.info('record erased', { requestId: isRequestId(requestId) ? requestId : undefined, id, collection, tokenId: grant.id, found: erased });
    // The same answer whether it existed, was already erased or never was: nothing to learn.
    res.status(200).json({ id, erased: true });
  });

  app.use(() => {
    throw new ApiError('notFound', 'no such endpoint');
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, code, message } = describeClientError(err);
    if (status >= 500) deps.log.error('request failed', { code, path: req.path, err: (err as Error).message });
    res.status(status).json(errorBody(code, message));
  });
  return app;
}
