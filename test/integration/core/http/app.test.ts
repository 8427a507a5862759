import { gzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { PemPair } from '../../../../services/common/pki/certificates';
import { keyedRecordId } from '../../../../services/core/storage/record-id';
import {
  coreRequest,
  createCorePki,
  errorCode,
  startCoreServer,
  startScratchDatabase,
  type CorePki,
  type CoreResponse,
  type CoreServer,
  type TestDatabase,
} from '../../../support/core-fixtures';

/**
 * Core's storage API over real HTTPS with mutual TLS, set up as services/core/main.ts does,
 * in front of a real FerretDB.
 */
describe('core storage API over mTLS on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  const tok = { writer: '', reader: '', ordersOnly: '', revoked: '', expired: '' };

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    core = await startCoreServer({ pki, db: database.db });
    tok.writer = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
    tok.reader = (await core.tokens.create({ collections: ['notes'], scopes: ['read'] })).token;
    tok.ordersOnly = (await core.tokens.create({ collections: ['orders'], scopes: ['read', 'write'] })).token;
    const revoked = await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] });
    assert.equal(await core.tokens.revoke(revoked.id), true);
    tok.revoked = revoked.token;
    tok.expired = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'], expiresAt: new Date(Date.now() - 1000) })).token;
  });

  after(async () => {
    await core?.close();
    await database?.cleanup();
  });

  const stored = (): Promise<number> => database.db.collection('records').countDocuments({});

  function post(opts: { path?: string; collection?: string; requestId?: string; token?: string; body?: string | Buffer; headers?: Record<string, string>; client?: PemPair | null }): Promise<CoreResponse> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-request-id': opts.requestId ?? randomUUID(),
      authorization: `Bearer ${opts.token ?? tok.writer}`,
      ...opts.headers,
    };
    const client = opts.client === null ? undefined : (opts.client ?? pki.broker);
    return coreRequest({ port: core.port, method: 'POST', path: opts.path ?? `/v1/records/${opts.collection ?? 'notes'}`, headers, body: opts.body ?? '{"title":"hi"}', ca: pki.ca.certPem, ...(client ? { client } : {}) });
  }

  function get(path: string, token = tok.writer): Promise<CoreResponse> {
    return coreRequest({ port: core.port, path, headers: { authorization: `Bearer ${token}` }, ca: pki.ca.certPem, client: pki.broker });
  }

  /** Runs `attempt`, which must be answered with `status` and an error body, and checks nothing was stored. */
  async function refusedWithoutEffect(attempt: () => Promise<CoreResponse>, status: number, code?: string): Promise<void> {
    const before = await stored();
    const res = await attempt();
    assert.equal(res.status, status, res.text);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(typeof errorCode(res), 'string', res.text);
    if (code) assert.equal(errorCode(res), code);
    assert.equal(await stored(), before);
  }

  describe('client certificates', () => {
    async function handshakeRefused(client: PemPair | undefined): Promise<void> {
      const before = await stored();
      await assert.rejects(
        coreRequest({ port: core.port, method: 'POST', path: '/v1/records/notes', headers: { 'content-type': 'application/json', 'x-request-id': randomUUID(), authorization: `Bearer ${tok.writer}` }, body: '{"a":1}', ca: pki.ca.certPem, ...(client ? { client } : {}) }),
        (err: Error & { code?: string }) => typeof err.code === 'string' && err.code !== 'ERR_ASSERTION',
      );
      assert.equal(await stored(), before);
    }

    it('fails the TLS handshake for a client without a certificate', async () => {
      await handshakeRefused(undefined);
    });

    it('fails the TLS handshake for a client certificate from another CA', async () => {
      await handshakeRefused(pki.foreignClient);
    });

    it('fails the TLS handshake for an expired client certificate', async () => {
      await handshakeRefused(pki.expiredClient);
    });

    it('fails the TLS handshake for a certificate of the right CA meant for servers only', async () => {
      // OpenSSL checks the purpose (EKU serverAuth is not clientAuth) before the app runs.
      await handshakeRefused(pki.serverAuthOnly);
    });

    it('answers 403 JSON to a certificate of the right CA without a client-auth EKU, storing nothing', async () => {
      await refusedWithoutEffect(() => post({ client: pki.noEku }), 403, 'forbidden');
    });

    it('accepts the broker certificate', async () => {
      const res = await post({});
      assert.equal(res.status, 201, res.text);
    });
  });

  describe('storing and reading', () => {
    it('stores a record under its request id and reads it back', async () => {
      const id = randomUUID();
      const res = await post({ requestId: id, body: JSON.stringify({ title: 'first', n: 1, tags: ['a', 'b'] }) });
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(res.json, { id });
      const back = await get(`/v1/records/notes/${id}`, tok.reader);
      assert.equal(back.status, 200, back.text);
      const rec = back.json as { id: string; collection: string; data: unknown; createdAt: string };
      assert.equal(rec.id, id);
      assert.equal(rec.collection, 'notes');
      assert.deepEqual(rec.data, { title: 'first', n: 1, tags: ['a', 'b'] });
      assert.ok(!Number.isNaN(Date.parse(rec.createdAt)));
    });

    it('answers a retried POST with the same 201 and keeps one document', async () => {
      const id = randomUUID();
      const body = JSON.stringify({ title: 'retry' });
      const first = await post({ requestId: id, body });
      const again = await post({ requestId: id, body });
      assert.equal(first.status, 201);
      assert.equal(again.status, 201, again.text);
      assert.deepEqual(again.json, { id });
      assert.equal(await database.db.collection('records').countDocuments({ _id: id as never }), 1);
    });

    it('answers 409 to a reused request id with another body and keeps the first body', async () => {
      const id = randomUUID();
      assert.equal((await post({ requestId: id, body: '{"v":1}' })).status, 201);
      await refusedWithoutEffect(() => post({ requestId: id, body: '{"v":2}' }), 409, 'conflict');
      assert.deepEqual((((await get(`/v1/records/notes/${id}`)).json) as { data: unknown }).data, { v: 1 });
    });

    it('answers 404 for a record id that was never stored', async () => {
      const res = await get(`/v1/records/notes/${randomUUID()}`);
      assert.equal(res.status, 404);
      assert.equal(errorCode(res), 'not_found');
    });

    it('does not show a record through another collection', async () => {
      const id = randomUUID();
      assert.equal((await post({ requestId: id })).status, 201);
      const res = await get(`/v1/records/orders/${id}`, tok.ordersOnly);
      assert.equal(res.status, 404);
    });

    it('answers 404 JSON for an unknown endpoint', async () => {
      const res = await get('/v1/other');
      assert.equal(res.status, 404);
      assert.equal(errorCode(res), 'not_found');
    });
  });

  describe('idempotency across key order, keys and token rotation', () => {
    const records = () => database.db.collection('records');

    it('answers a retry whose body has its keys in another order with 201 and the same id, storing one record', async () => {
      const id = randomUUID();
      const first = await post({ requestId: id, body: '{"title":"t","meta":{"b":2,"a":1},"tags":["x","y"]}' });
      assert.equal(first.status, 201, first.text);
      const again = await post({ requestId: id, body: '{"tags":["x","y"],"meta":{"a":1,"b":2},"title":"t"}' });
      assert.equal(again.status, 201, again.text);
      assert.deepEqual(again.json, { id });
      assert.equal(await records().countDocuments({ _id: id as never }), 1);
      // Array order is content: the same keys with the array reordered is another record.
      await refusedWithoutEffect(() => post({ requestId: id, body: '{"tags":["y","x"],"meta":{"a":1,"b":2},"title":"t"}' }), 409, 'conflict');
    });

    it('stores a keyed write under the id derived from the client, collection and key, not the request id, and reads it back by that id', async () => {
      const { token, client } = await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'], client: 'keyed-app' });
      const requestId = randomUUID();
      const res = await post({ requestId, token, body: '{"n":1}', headers: { 'idempotency-key': 'order-1' } });
      assert.equal(res.status, 201, res.text);
      const id = keyedRecordId(client, 'notes', 'order-1');
      assert.deepEqual(res.json, { id });
      assert.notEqual(id, requestId);
      assert.equal(await records().countDocuments({ _id: requestId as never }), 0);
      const back = await get(`/v1/records/notes/${id}`, token);
      assert.equal(back.status, 200, back.text);
      assert.deepEqual((back.json as { data: unknown }).data, { n: 1 });
    });

    it('answers a keyed retry with a new request id and reordered keys with the same id, and a different body under the key with 409', async () => {
      const { token } = await core.tokens.create({ collections: ['notes'], scopes: ['write'], client: 'retrying-app' });
      const first = await post({ token, body: '{"a":1,"b":{"c":2,"d":3}}', headers: { 'idempotency-key': 'same-key' } });
      assert.equal(first.status, 201, first.text);
      const { id } = first.json as { id: string };
      const retry = await post({ token, body: '{"b":{"d":3,"c":2},"a":1}', headers: { 'idempotency-key': 'same-key' } });
      assert.equal(retry.status, 201, retry.text);
      assert.deepEqual(retry.json, { id });
      await refusedWithoutEffect(() => post({ token, body: '{"a":2}', headers: { 'idempotency-key': 'same-key' } }), 409, 'conflict');
      assert.equal(await records().countDocuments({ _id: id as never }), 1);
      assert.deepEqual((await core.records.get('notes', id))?.data, { a: 1, b: { c: 2, d: 3 } });
    });

    it('converges a keyed retry sent with the rotated token on the one record the old token stored', async () => {
      const a = await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'], client: 'rotating-app' });
      const first = await post({ token: a.token, body: '{"paid":true}', headers: { 'idempotency-key': 'invoice-7' } });
      assert.equal(first.status, 201, first.text);
      const b = await core.tokens.rotate(a.id);
      assert.ok(b);
      assert.ok(await core.tokens.revoke(a.id));
      const retry = await post({ token: b.token, body: '{"paid":true}', headers: { 'idempotency-key': 'invoice-7' } });
      assert.equal(retry.status, 201, retry.text);
      assert.deepEqual(retry.json, first.json);
      const { id } = first.json as { id: string };
      assert.equal(await records().countDocuments({ _id: id as never }), 1);
      assert.equal(await records().countDocuments({ _id: id as never, client: 'rotating-app' }), 1);
      assert.deepEqual((await core.records.get('notes', id))?.data, { paid: true });
      // The old token is revoked: the retry went through the new one.
      await refusedWithoutEffect(() => post({ token: a.token, body: '{"paid":true}', headers: { 'idempotency-key': 'invoice-8' } }), 401, 'unauthenticated');
    });

    it('keeps the same key of two different clients apart: two records, two ids', async () => {
      const one = await core.tokens.create({ collections: ['notes'], scopes: ['write'], client: 'client-one' });
      const two = await core.tokens.create({ collections: ['notes'], scopes: ['write'], client: 'client-two' });
      const r1 = await post({ token: one.token, body: '{"v":1}', headers: { 'idempotency-key': 'shared' } });
      const r2 = await post({ token: two.token, body: '{"v":2}', headers: { 'idempotency-key': 'shared' } });
      assert.equal(r1.status, 201, r1.text);
      assert.equal(r2.status, 201, r2.text);
      assert.notDeepEqual(r1.json, r2.json);
      for (const [res, v] of [[r1, 1], [r2, 2]] as const) {
        assert.deepEqual((await core.records.get('notes', (res.json as { id: string }).id))?.data, { v });
      }
    });

    it('refuses a malformed Idempotency-Key with 400', async () => {
      for (const key of ['with space', 'k'.repeat(129), 'é']) {
        await refusedWithoutEffect(() => post({ headers: { 'idempotency-key': key } }), 400, 'bad_request');
      }
    });
  });

  describe('hostile input changes nothing', () => {
    it('refuses a collection name holding $', async () => {
      await refusedWithoutEffect(() => post({ path: '/v1/records/no$tes' }), 400, 'bad_collection');
    });

    it('refuses a percent-encoded $where collection', async () => {
      await refusedWithoutEffect(() => post({ path: '/v1/records/%24where' }), 400, 'bad_collection');
      await refusedWithoutEffect(() => get('/v1/records/%24where/00000000-0000-4000-8000-000000000000'), 400, 'bad_collection');
    });

    it('refuses other malformed collection names', async () => {
      for (const c of ['system.users', 'Notes', 'a.b', '%00notes', 'x'.repeat(64)]) {
        await refusedWithoutEffect(() => post({ path: `/v1/records/${c}` }), 400, 'bad_collection');
      }
    });

    it('refuses a record id shaped like an operator object, raw or encoded', async () => {
      await refusedWithoutEffect(() => get(`/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`), 400, 'bad_record_id');
      await refusedWithoutEffect(() => get('/v1/records/notes/{"$gt":""}'), 400, 'bad_record_id');
      await refusedWithoutEffect(() => get('/v1/records/notes/%7B%24ne%3Anull%7D'), 400, 'bad_record_id');
    });

    it('refuses an X-Request-Id that is not a lowercase UUID', async () => {
      for (const rid of ['abc', '{"$gt":""}', '[object Object]', randomUUID().toUpperCase(), `${randomUUID()}x`, '']) {
        await refusedWithoutEffect(() => post({ requestId: rid }), 400, 'bad_request');
      }
      await refusedWithoutEffect(() => post({ headers: { 'x-request-id': `${randomUUID()}, ${randomUUID()}` } }), 400, 'bad_request');
    });

    it('refuses tokens holding $ or quotes, and malformed Authorization headers, with 401', async () => {
      const id = tok.writer.slice(4, 20);
      for (const token of [`nst_${id}_$x`, `nst_${id}_"x"`, `nst_${id}_${'$'.repeat(43)}`, `nst_${id}_x`, '{"$gt":""}']) {
        await refusedWithoutEffect(() => post({ token }), 401, 'unauthenticated');
      }
      await refusedWithoutEffect(() => post({ headers: { authorization: tok.writer } }), 401, 'unauthenticated');
      await refusedWithoutEffect(() => post({ headers: { authorization: `Basic ${tok.writer}` } }), 401, 'unauthenticated');
      await refusedWithoutEffect(() => post({ headers: { authorization: `Bearer ${tok.writer} extra` } }), 401, 'unauthenticated');
    });

    it('refuses bodies with operator, dotted or prototype keys with 422', async () => {
      for (const body of ['{"$set":{"admin":true}}', '{"a.b":1}', '{"__proto__":{"polluted":1}}', '{"x":{"$where":"sleep(1000)"}}', '{"list":[{"$gt":""}]}', '{"constructor":{"prototype":{}}}']) {
        await refusedWithoutEffect(() => post({ body }), 422, 'forbidden_key');
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    it('refuses bodies that are not a JSON object', async () => {
      await refusedWithoutEffect(() => post({ body: '{"a":' }), 400, 'bad_json');
      await refusedWithoutEffect(() => post({ body: '[1,2]' }), 422, 'not_an_object');
      await refusedWithoutEffect(() => post({ body: '"text"' }), 422, 'not_an_object');
      await refusedWithoutEffect(() => post({ body: '[' .repeat(100) + ']'.repeat(100) }), 422, 'too_deep');
    });

    it('refuses a number that has no JSON form with 422, not 503', async () => {
      await refusedWithoutEffect(() => post({ body: '{"n":1e400}' }), 422, 'schema_violation');
    });

    it('refuses a body that is not valid UTF-8 instead of storing replacement characters', async () => {
      const body = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]);
      await refusedWithoutEffect(() => post({ body }), 400, 'bad_encoding');
    });

    it('refuses any Content-Encoding with 415: bodies are never inflated', async () => {
      await refusedWithoutEffect(() => post({ headers: { 'content-encoding': 'bogus' } }), 415, 'unsupported_media_type');
      await refusedWithoutEffect(() => post({ body: 'not gzip at all', headers: { 'content-encoding': 'gzip' } }), 415, 'unsupported_media_type');
      const gzipped = gzipSync(Buffer.from(JSON.stringify({ title: 'compressed' })));
      await refusedWithoutEffect(() => post({ body: gzipped, headers: { 'content-encoding': 'gzip' } }), 415, 'unsupported_media_type');
    });

    it('refuses a path that does not percent-decode with 400', async () => {
      await refusedWithoutEffect(() => post({ path: '/v1/records/%E0%A4%A' }), 400, 'bad_request');
      await refusedWithoutEffect(() => get('/v1/records/notes/%C0'), 400, 'bad_request');
    });

    it('refuses a body that is not declared as JSON with 415', async () => {
      await refusedWithoutEffect(() => post({ headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    });

    it('refuses a body over the limit with 413', async () => {
      const big = JSON.stringify({ blob: 'x'.repeat(1024 * 1024 + 8192) });
      await refusedWithoutEffect(() => post({ body: big }), 413, 'body_too_large');
    });
  });

  describe('token checks', () => {
    it('refuses a revoked token with 401', async () => {
      await refusedWithoutEffect(() => post({ token: tok.revoked }), 401, 'unauthenticated');
    });

    it('refuses an expired token with 401', async () => {
      await refusedWithoutEffect(() => post({ token: tok.expired }), 401, 'unauthenticated');
    });

    it('refuses a token for another collection with 403', async () => {
      await refusedWithoutEffect(() => post({ token: tok.ordersOnly }), 403, 'forbidden');
      assert.equal((await post({ token: tok.ordersOnly, collection: 'orders' })).status, 201);
    });

    it('refuses a write with a read-only token with 403', async () => {
      await refusedWithoutEffect(() => post({ token: tok.reader }), 403, 'forbidden');
    });

    it('refuses a read without a token with 401', async () => {
      const id = randomUUID();
      assert.equal((await post({ requestId: id })).status, 201);
      const res = await coreRequest({ port: core.port, path: `/v1/records/notes/${id}`, ca: pki.ca.certPem, client: pki.broker });
      assert.equal(res.status, 401);
      assert.equal(errorCode(res), 'unauthenticated');
    });

    it('refuses a read with a token for another collection with 403', async () => {
      const id = randomUUID();
      assert.equal((await post({ requestId: id })).status, 201);
      const res = await get(`/v1/records/notes/${id}`, tok.ordersOnly);
      assert.equal(res.status, 403);
      assert.equal(errorCode(res), 'forbidden');
    });
  });
});
