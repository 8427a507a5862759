import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { ErrorCodes } from '../../../../services/common/errors/codes';
import { DEFAULT_JSON_LIMITS } from '../../../../services/common/json/limits';
import type { ReplyEnvelope } from '../../../../services/common/queue/envelope';
import { PROTOCOL_VERSION } from '../../../../services/common/queue/keys';
import type { QueueRequest } from '../../../../services/gateway/queue/dispatcher';
import { AdmissionControl } from '../../../../services/gateway/http/admission';
import { createApp } from '../../../../services/gateway/http/app';
import { gatewayMetrics } from '../../../../services/gateway/metrics';
import { silentLogger } from '../../../support/logger';

/**
 * The gateway app's own answers for paths and methods it does not serve, over a loopback
 * listener; the queue is a stub that answers every request with 201, so the positive
 * control shows the same routes do reach it with the right method.
 */
describe('gateway app: unknown paths and wrong methods', () => {
  let server: Server;
  let base: string;
  const submitted: QueueRequest[] = [];

  before(async () => {
    const app = createApp({
      gatewayId: 'gw1',
      limits: DEFAULT_JSON_LIMITS,
      requestTimeoutMs: 5000,
      bodyTimeoutMs: 5000,
      submit: (e: QueueRequest): Promise<ReplyEnvelope> => {
        submitted.push(e);
        return Promise.resolve({ v: PROTOCOL_VERSION, id: e.id, status: 201, body: { id: e.id } });
      },
      admission: new AdmissionControl({ maxPendingRequests: 64, maxPendingBytes: 4 * DEFAULT_JSON_LIMITS.maxBytes }),
      metrics: gatewayMetrics(new Registry()),
      log: silentLogger(),
    });
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const headers = { authorization: 'Bearer nst_0123456789abcdef_secret', 'content-type': 'application/json' };

  it('accepts POST on a collection and GET on a record (positive control)', async () => {
    const post = await fetch(`${base}/v1/records/notes`, { method: 'POST', headers, body: '{"a":1}' });
    assert.equal(post.status, 201);
    const get = await fetch(`${base}/v1/records/notes/0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b`, { headers });
    assert.equal(get.status, 201);
    assert.deepEqual(submitted.map((e) => e.method), ['POST', 'GET']);
  });

  it('answers a wrong method with 405, the shared code and the allowed method', async () => {
    const before = submitted.length;
    for (const [method, path, allow] of [
      ['PUT', '/v1/records/notes', 'GET, POST'],
      ['DELETE', '/v1/records/notes', 'GET, POST'],
      ['POST', '/v1/records/notes/0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b', 'GET, DELETE'],
      ['PATCH', '/v1/records/notes/0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b', 'GET, DELETE'],
    ] as const) {
      const res = await fetch(`${base}${path}`, { method, headers, ...(method === 'POST' ? { body: '{}' } : {}) });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.get('allow'), allow);
      const body = (await res.json()) as { error: { code: string } };
      assert.equal(body.error.code, ErrorCodes.methodNotAllowed.code);
      assert.equal(body.error.code, 'method_not_allowed');
    }
    assert.equal(submitted.length, before, 'nothing was queued');
  });

  it('queues a list with its query as typed values, and a delete with its record id', async () => {
    const before = submitted.length;
    const list = await fetch(`${base}/v1/records/notes?limit=5&createdFrom=2026-11-28T10:00:00%2B01:00&cursor=AQID-_x`, { headers });
    assert.equal(list.status, 201);
    const bare = await fetch(`${base}/v1/records/notes`, { headers });
    assert.equal(bare.status, 201);
    const erase = await fetch(`${base}/v1/records/notes/0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b`, { method: 'DELETE', headers });
    assert.equal(erase.status, 201);
    const queued = submitted.slice(before).map(({ method, collection, recordId, query, body }) => ({ method, collection, recordId, query, body }));
    assert.deepEqual(queued, [
      { method: 'LIST', collection: 'notes', recordId: undefined, query: { limit: 5, createdFrom: '2026-11-28T10:00:00+01:00', cursor: 'AQID-_x' }, body: undefined },
      { method: 'LIST', collection: 'notes', recordId: undefined, query: {}, body: undefined },
      { method: 'DELETE', collection: 'notes', recordId: '0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b', query: undefined, body: undefined },
    ]);
  });

  it('refuses a hostile list query with 400 bad_query and queues nothing', async () => {
    const before = submitted.length;
    for (const q of ['createdFrom[$ne]=x', 'createdFrom%5B%24ne%5D=x', 'limit=5&limit=6', 'limit=1000000', 'limit=-1', 'limit=0', 'cursor[$gt]=', 'sort=_id', 'createdTo=yesterday']) {
      const res = await fetch(`${base}/v1/records/notes?${q}`, { headers });
      assert.equal(res.status, 400, q);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'bad_query', q);
    }
    const badId = await fetch(`${base}/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`, { method: 'DELETE', headers });
    assert.equal(badId.status, 400);
    assert.equal(((await badId.json()) as { error: { code: string } }).error.code, 'bad_record_id');
    assert.equal(submitted.length, before, 'a refused request was queued');
  });

  it('answers an unknown path with a JSON 404', async () => {
    const res = await fetch(`${base}/v1/other`, { headers });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: { code: 'not_found', message: 'no such endpoint', stored: 'no' } });
  });
});
