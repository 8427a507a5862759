import assert from 'node:assert/strict';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { DEFAULT_JSON_LIMITS } from '../../../../services/common/json/limits';
import type { ReplyEnvelope } from '../../../../services/common/queue/envelope';
import { PROTOCOL_VERSION } from '../../../../services/common/queue/keys';
import { AdmissionControl } from '../../../../services/gateway/http/admission';
import { createApp } from '../../../../services/gateway/http/app';
import { BodyReadError, leanRoute, readBoundedBody } from '../../../../services/gateway/http/lean-route';
import { gatewayMetrics } from '../../../../services/gateway/metrics';
import type { QueueRequest } from '../../../../services/gateway/queue/dispatcher';
import { silentLogger } from '../../../support/logger';

const RECORD_ID = '0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b';
const MAX = DEFAULT_JSON_LIMITS.maxBytes;

describe('readBoundedBody', () => {
  it('resolves a body of exactly the limit and the expected length', async () => {
    const s = new PassThrough();
    const body = readBoundedBody(s, 10, 10);
    s.write('01234');
    s.end('56789');
    assert.equal((await body).toString(), '0123456789');
  });

  it('refuses one byte past the limit with 413 entity.too.large, after reading the stream to its end', async () => {
    const s = new PassThrough();
    const body = readBoundedBody(s, 10);
    s.write('0123456789');
    s.write('x');
    s.end('more after the limit');
    await assert.rejects(body, (err: unknown) => err instanceof BodyReadError && err.status === 413 && err.type === 'entity.too.large');
    // Read to the end: a kept-alive connection is left at the next request.
    assert.equal(s.readableEnded, true);
  });

  it('refuses a body shorter than its declared length with 400, and one cut off by a close before its end', async () => {
    const short = new PassThrough();
    const a = readBoundedBody(short, 100, 20);
    short.end('{"a":');
    await assert.rejects(a, (err: unknown) => err instanceof BodyReadError && err.status === 400 && err.type === 'request.size.invalid');

    const cut = new PassThrough();
    const b = readBoundedBody(cut, 100, 20);
    cut.write('{"a":');
    cut.destroy();
    await assert.rejects(b, (err: unknown) => err instanceof BodyReadError && err.status === 400 && err.type === 'request.aborted');
  });
});

describe('leanRoute: the requests answered without Express', () => {
  const req = (method: string, url: string, headers: Record<string, string> = {}): IncomingMessage => ({ method, url, headers }) as unknown as IncomingMessage;
  const post = (url: string, headers: Record<string, string> = {}): IncomingMessage => req('POST', url, { 'content-length': '7', ...headers });

  it('takes a POST on the exact collection path with a Content-Length up to the limit, and a plain GET of a record', () => {
    assert.deepEqual(leanRoute(post('/v1/records/notes'), MAX), { method: 'POST', collection: 'notes', contentLength: 7 });
    assert.deepEqual(leanRoute(post('/v1/records/notes', { 'content-length': String(MAX) }), MAX), { method: 'POST', collection: 'notes', contentLength: MAX });
    assert.deepEqual(leanRoute(req('GET', `/v1/records/notes/${RECORD_ID}`), MAX), { method: 'GET', collection: 'notes', recordId: RECORD_ID });
  });

  it('leaves to Express every body it would not read as body-parser does: encoded, chunked, past the limit, undeclared', () => {
    for (const encoding of ['gzip', 'identity', 'br']) assert.equal(leanRoute(post('/v1/records/notes', { 'content-encoding': encoding }), MAX), undefined, encoding);
    assert.equal(leanRoute(req('POST', '/v1/records/notes', { 'transfer-encoding': 'chunked' }), MAX), undefined);
    assert.equal(leanRoute(post('/v1/records/notes', { 'content-length': String(MAX + 1) }), MAX), undefined);
    assert.equal(leanRoute(post('/v1/records/notes', { 'content-length': '7x' }), MAX), undefined);
    assert.equal(leanRoute(req('POST', '/v1/records/notes'), MAX), undefined);
  });

  it('leaves to Express other methods, lists, conditional or bodied GETs and every other spelling of a path', () => {
    for (const url of ['/v1/records/notes/', '/v1/records/notes?x=1', '/v1/records/n%6Ftes', '/V1/records/notes', '/v1/records/notes#f', '/v1/records/notes/x/y', '/v2/records/notes']) {
      assert.equal(leanRoute(post(url), MAX), undefined, url);
    }
    assert.equal(leanRoute(req('GET', '/v1/records/notes'), MAX), undefined);
    assert.equal(leanRoute(req('HEAD', `/v1/records/notes/${RECORD_ID}`), MAX), undefined);
    assert.equal(leanRoute(req('DELETE', `/v1/records/notes/${RECORD_ID}`), MAX), undefined);
    assert.equal(leanRoute(post(`/v1/records/notes/${RECORD_ID}`), MAX), undefined);
    assert.equal(leanRoute(req('GET', `/v1/records/notes/${RECORD_ID}`, { 'if-none-match': '*' }), MAX), undefined);
    assert.equal(leanRoute(req('GET', `/v1/records/notes/${RECORD_ID}`, { 'if-modified-since': 'Sat, 28 Nov 2026 00:00:00 GMT' }), MAX), undefined);
    assert.equal(leanRoute(req('GET', `/v1/records/notes/${RECORD_ID}`, { 'content-length': '2' }), MAX), undefined);
  });
});

/**
 * The same requests through the lean path (the exact path) and through Express (the same
 * path with a trailing slash, which Express matches and the lean path leaves to it): the
 * answers must be the same bytes apart from the request id and Date.
 */
describe('gateway app: the lean path answers as the Express path does', () => {
  let server: Server;
  let base: string;
  const registry = new Registry();

  before(async () => {
    const app = createApp({
      gatewayId: 'gw1',
      limits: DEFAULT_JSON_LIMITS,
      requestTimeoutMs: 5000,
      bodyTimeoutMs: 5000,
      submit: (e: QueueRequest): Promise<ReplyEnvelope> =>
        Promise.resolve({ v: PROTOCOL_VERSION, id: e.id, status: e.method === 'POST' ? 201 : 200, body: { id: e.id, note: 'ü ☃' } }),
      admission: new AdmissionControl({ maxPendingRequests: 64, maxPendingBytes: 4 * MAX }),
      metrics: gatewayMetrics(registry),
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

  const auth = { authorization: 'Bearer nst_0123456789abcdef_secret' };
  const json = { ...auth, 'content-type': 'application/json' };

  async function answer(path: string, init: RequestInit): Promise<{ status: number; headers: [string, string][]; body: string; requestId: string | null }> {
    const res = await fetch(`${base}${path}`, init);
    const body = await res.text();
    const requestId = res.headers.get('x-request-id');
    const headers = [...res.headers].filter(([k]) => k !== 'date').map(([k, v]): [string, string] => [k, requestId === null ? v : v.replaceAll(requestId, 'ID')]);
    return { status: res.status, headers, body: requestId === null ? body : body.replaceAll(requestId, 'ID'), requestId };
  }

  const cases: [string, string, RequestInit][] = [
    ['a stored POST', '/v1/records/notes', { method: 'POST', headers: json, body: '{"a":1}' }],
    ['a POST with invalid JSON', '/v1/records/notes', { method: 'POST', headers: json, body: '{"a":' }],
    ['a POST without a token', '/v1/records/notes', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' }],
    ['a POST that is not JSON', '/v1/records/notes', { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: '{"a":1}' }],
    ['a POST of invalid UTF-8', '/v1/records/notes', { method: 'POST', headers: json, body: Buffer.from([0x22, 0xff, 0x22]) }],
    ['a GET of a record', `/v1/records/notes/${RECORD_ID}`, { headers: auth }],
    ['a GET of a malformed id', '/v1/records/notes/123', { headers: auth }],
  ];
  for (const [what, path, init] of cases) {
    it(`answers ${what} with the same status, headers and body either way`, async () => {
      const lean = await answer(path, init);
      const viaExpress = await answer(`${path}/`, init);
      assert.deepEqual(lean, { ...viaExpress, requestId: lean.requestId });
      assert.equal(lean.requestId !== null, viaExpress.requestId !== null);
    });
  }

  it('refuses a compressed body on the exact path with 415, and stores the same body sent plain (positive control)', async () => {
    const gz = await fetch(`${base}/v1/records/notes`, { method: 'POST', headers: { ...json, 'content-encoding': 'gzip' }, body: gzipSync('{"a":1}') });
    assert.equal(gz.status, 415);
    assert.equal(((await gz.json()) as { error: { code: string } }).error.code, 'unsupported_media_type');
    const plain = await fetch(`${base}/v1/records/notes`, { method: 'POST', headers: json, body: '{"a":1}' });
    assert.equal(plain.status, 201);
  });

  it('takes a body of exactly the limit and refuses one byte more with 413 body_too_large', async () => {
    const body = (n: number): string => `"${'x'.repeat(n - 2)}"`;
    const atLimit = await fetch(`${base}/v1/records/notes`, { method: 'POST', headers: json, body: body(MAX) });
    assert.equal(atLimit.status, 201);
    const over = await fetch(`${base}/v1/records/notes`, { method: 'POST', headers: json, body: body(MAX + 1) });
    assert.equal(over.status, 413);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'body_too_large');
  });

  it('counts each answer of the lean path by method and status', async () => {
    const count = async (method: string, status: string): Promise<number> =>
      (await registry.getSingleMetric('nonstop_gateway_requests_total')!.get()).values.find((v) => v.labels.method === method && v.labels.status === status)?.value ?? 0;
    const [post201, get401] = [await count('POST', '201'), await count('GET', '401')];
    assert.equal((await fetch(`${base}/v1/records/notes`, { method: 'POST', headers: json, body: '{"a":1}' })).status, 201);
    assert.equal((await fetch(`${base}/v1/records/notes/${RECORD_ID}`)).status, 401);
    // Counted when the response closes, a tick after the client may have read it.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await count('POST', '201'), post201 + 1);
    assert.equal(await count('GET', '401'), get401 + 1);
  });
});
