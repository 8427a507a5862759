import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request } from 'node:https';
import { DEFAULT_JSON_LIMITS } from '../../services/common/json/limits';
import { readJsonResponse } from '../support/http-response';
import { OpenApiContract } from '../support/openapi-contract';
import { ApiClient, createToken, type ApiResponse } from '../support/stack/api-client';
import { queryCore } from '../support/stack/core-db';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

/**
 * The public API, driven from the host through the gateway's published HTTPS port with the
 * whole chain behind it (gateway → queue → broker → core), answers every endpoint's success
 * and every error class a client can cause as docs/openapi.json documents it: the status is
 * documented for that operation, the documented headers are there and well-formed, and the
 * body matches the schema. Each case also asserts the status and code it set out to cause,
 * so a case that hit something else fails instead of validating the wrong answer.
 *
 * One stack for the whole file. The gateway's limits are lowered where that makes an error
 * cheap to cause and changes nothing else a sequential client sees: BODY_TIMEOUT_MS (408),
 * CONNECTIONS_PER_ADDRESS (429), MAX_PENDING_BYTES down to MAX_BODY_BYTES (503 overloaded)
 * and REQUEST_TIMEOUT_MS (504).
 */
const BODY_TIMEOUT_MS = 3000;
const CONNECTIONS_PER_ADDRESS = 4;
const REQUEST_TIMEOUT_MS = 3000;
const MAX_BODY_BYTES = DEFAULT_JSON_LIMITS.maxBytes;

interface Held {
  /** The answer, or the error that ended the request first (a holder is usually cut). */
  answer: Promise<ApiResponse | Error>;
  stop(): void;
}

describe('the public API through the whole chain, checked against docs/openapi.json', function () {
  this.timeout(600_000);
  const contract = OpenApiContract.load();
  let stack: Stack;
  let api: ApiClient;
  let port: number;
  let ca: string;
  /** read,write on notes and orders. */
  let token: string;
  /** read,write on orders only. */
  let ordersOnly: string;
  /** read,write,delete on notes and orders; created by the first test that needs it. */
  let eraser: string | undefined;

  /** Asserts the answer is the one the case set out to cause, and that the document describes it. */
  function expectDocumented(method: string, path: string, res: ApiResponse, status: number, code?: string): void {
    assert.equal(res.status, status, `${method} ${path}: ${res.text.slice(0, 300)}`);
    if (code !== undefined) assert.equal((res.json as { error?: { code?: string } } | undefined)?.error?.code, code, `${method} ${path}: ${res.text.slice(0, 300)}`);
    assert.deepEqual(contract.problems(method, path, res), [], `${method} ${path} answered ${res.status}`);
  }

  async function call(method: string, path: string, opts: Parameters<ApiClient['send']>[2], status: number, code?: string): Promise<ApiResponse> {
    const res = await api.send(method, path, opts);
    expectDocumented(method, path, res, status, code);
    return res;
  }

  const post = (collection: string, record: unknown, status: number, code?: string, headers?: Record<string, string>, as = token): Promise<ApiResponse> =>
    call('POST', `/v1/records/${collection}`, { token: as, body: JSON.stringify(record), ...(headers ? { headers } : {}) }, status, code);

  async function eraserToken(): Promise<string> {
    eraser ??= await createToken(stack, ['notes', 'orders'], 'read,write,delete');
    return eraser;
  }

  /** A request whose body is announced and only partly sent: it stays open at nginx and the app. */
  function hold(path: string, announced: number, sent: string): Held {
    const req = request({
      host: '127.0.0.1', port, method: 'POST', path, ca, servername: 'localhost', agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': String(announced) },
    });
    const answer = new Promise<ApiResponse | Error>((resolve) => {
      req.on('response', (res) => readJsonResponse(res).then(resolve, resolve));
      req.on('error', resolve);
    });
    req.write(sent);
    return { answer, stop: () => req.destroy() };
  }

  /** The answer of the first held request already answered with `status`, if any. */
  async function firstAnswer(held: Held[], status: number): Promise<ApiResponse | undefined> {
    const now = await Promise.all(held.map((h) => Promise.race([h.answer, Promise.resolve(undefined)])));
    return now.find((r): r is ApiResponse => r !== undefined && !(r instanceof Error) && r.status === status);
  }

  async function answered(held: Held): Promise<ApiResponse> {
    const res = await held.answer;
    if (res instanceof Error) assert.fail(`the request ended without an answer: ${res.message}`);
    return res;
  }

  before(async () => {
    stack = await upStack({}, (spec) => {
      const env = spec.services.gateway!.environment;
      env.BODY_TIMEOUT_MS = String(BODY_TIMEOUT_MS);
      env.CONNECTIONS_PER_ADDRESS = String(CONNECTIONS_PER_ADDRESS);
      env.MAX_PENDING_BYTES = String(MAX_BODY_BYTES);
      env.REQUEST_TIMEOUT_MS = String(REQUEST_TIMEOUT_MS);
    });
    api = await ApiClient.forStack(stack);
    port = await stack.hostPort('gateway', 443);
    ca = (await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt'])).stdout;
    token = await createToken(stack, ['notes', 'orders']);
    ordersOnly = await createToken(stack, ['orders']);
    await waitFor('a tunnel to carry the first request', async () => (await api.post('notes', { title: 'warm-up' }, token)).status === 201, 120_000, 500);
  });

  after(async () => {
    await stack?.down();
  });

  describe('success answers', () => {
    it('creates (201) and reads (200) a record of each collection, with and without an Idempotency-Key', async () => {
      for (const [collection, record] of [['notes', { title: 'contract', tags: ['openapi'], sensitivity: 'internal' }], ['orders', { customer: 'c', items: [{ sku: 'A-1', quantity: 2 }] }]] as const) {
        const plain = await post(collection, record, 201);
        const keyed = await post(collection, record, 201, undefined, { 'idempotency-key': `k-${randomUUID()}` });
        for (const created of [plain, keyed]) {
          const id = (created.json as { id: string }).id;
          const read = await call('GET', `/v1/records/${collection}/${id}`, { token }, 200);
          assert.deepEqual((read.json as { data: unknown }).data, record);
        }
      }
    });

    it('lists a collection page by page (200) with limit, cursor and createdAt filters', async () => {
      const from = new Date(Date.now() - 1000).toISOString();
      for (let i = 0; i < 3; i++) await post('orders', { customer: `page-${i}`, items: [{ sku: 'P', quantity: 1 }] }, 201);
      const first = await call('GET', `/v1/records/orders?limit=2&createdFrom=${from}`, { token }, 200);
      const page = first.json as { records: unknown[]; nextCursor: string | null };
      assert.equal(page.records.length, 2);
      assert.equal(typeof page.nextCursor, 'string');
      const next = await call('GET', `/v1/records/orders?limit=2&createdFrom=${from}&cursor=${page.nextCursor}`, { token }, 200);
      const last = next.json as { records: unknown[]; nextCursor: string | null };
      assert.ok(last.records.length >= 1);
      const to = new Date(Date.now() + 60_000).toISOString();
      await call('GET', `/v1/records/orders?createdFrom=${from}&createdTo=${to}`, { token }, 200);
      await call('GET', '/v1/records/notes', { token }, 200);
    });

    it('erases a record (200), answers the same again and for one never stored, and then does not find it', async () => {
      const id = (await post('notes', { title: 'to erase' }, 201)).json as { id: string };
      const as = await eraserToken();
      for (const target of [id.id, id.id, randomUUID()]) {
        const erased = await call('DELETE', `/v1/records/notes/${target}`, { token: as }, 200);
        assert.deepEqual(erased.json, { id: target, erased: true });
      }
      await call('GET', `/v1/records/notes/${id.id}`, { token }, 404, 'not_found');
    });
  });

  describe('400', () => {
    it('bad_json, bad_encoding and bad_request (Idempotency-Key) on a write', async () => {
      await call('POST', '/v1/records/notes', { token, body: '{"title":' }, 400, 'bad_json');
      await call('POST', '/v1/records/notes', { token, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }, 400, 'bad_encoding');
      await post('notes', { title: 'k' }, 400, 'bad_request', { 'idempotency-key': 'x'.repeat(129) });
    });

    it('headers_too_large for a header past nginx’s buffers', async () => {
      await call('GET', `/v1/records/notes/${randomUUID()}`, { token, headers: { 'x-padding': 'p'.repeat(9000) } }, 400, 'headers_too_large');
    });

    it('bad_collection and bad_record_id on every operation that names them', async () => {
      await call('POST', '/v1/records/Not-A-Name', { token, body: '{}' }, 400, 'bad_collection');
      await call('GET', '/v1/records/Not-A-Name', { token }, 400, 'bad_collection');
      await call('GET', '/v1/records/notes/not-a-uuid', { token }, 400, 'bad_record_id');
      await call('DELETE', '/v1/records/notes/not-a-uuid', { token: await eraserToken() }, 400, 'bad_record_id');
    });

    it('bad_query for a limit out of range, an unknown, a repeated or a zone-less parameter', async () => {
      for (const q of ['limit=0', 'limit=101', 'limit=ten', 'sort=id', 'limit=1&limit=2', 'createdFrom=2026-01-01T00:00:00']) {
        await call('GET', `/v1/records/notes?${q}`, { token }, 400, 'bad_query');
      }
    });

    it('bad_cursor for a forged cursor and for one issued for another collection', async () => {
      await call('GET', '/v1/records/notes?cursor=bm90LWEtY3Vyc29y', { token }, 400, 'bad_cursor');
      await post('orders', { customer: 'x', items: [{ sku: 'C', quantity: 1 }] }, 201);
      await post('orders', { customer: 'y', items: [{ sku: 'C', quantity: 1 }] }, 201);
      const orders = (await call('GET', '/v1/records/orders?limit=1', { token }, 200)).json as { nextCursor: string };
      assert.equal(typeof orders.nextCursor, 'string');
      await call('GET', `/v1/records/notes?limit=1&cursor=${orders.nextCursor}`, { token }, 400, 'bad_cursor');
    });
  });

  describe('401, 403, 404, 405', () => {
    it('401 unauthenticated without a token (the gateway) and with one core does not know (through the queue)', async () => {
      await call('POST', '/v1/records/notes', { body: '{"title":"t"}' }, 401, 'unauthenticated');
      const unknown = await call('GET', `/v1/records/notes/${randomUUID()}`, { token: `nst_${'A'.repeat(40)}` }, 401, 'unauthenticated');
      assert.ok(unknown.headers['x-request-id'], 'positive control: core’s 401 carries the request id the document allows');
    });

    it('403 forbidden for a collection the token is not granted, and for delete without the delete scope', async () => {
      await post('notes', { title: 't' }, 403, 'forbidden', undefined, ordersOnly);
      await call('GET', `/v1/records/notes/${randomUUID()}`, { token: ordersOnly }, 403, 'forbidden');
      await call('GET', '/v1/records/notes', { token: ordersOnly }, 403, 'forbidden');
      await call('DELETE', `/v1/records/notes/${randomUUID()}`, { token }, 403, 'forbidden');
    });

    it('404 not_found for a record that is not there and unknown_collection for a collection without a schema', async () => {
      await call('GET', `/v1/records/notes/${randomUUID()}`, { token }, 404, 'not_found');
      await call('POST', '/v1/records/nosuch', { token, body: '{"a":1}' }, 404, 'unknown_collection');
      await call('GET', '/v1/records/nosuch', { token }, 404, 'unknown_collection');
      await call('GET', `/v1/records/nosuch/${randomUUID()}`, { token }, 404, 'unknown_collection');
    });

    it('405 method_not_allowed with Allow for a method a path does not take', async () => {
      const put = await call('PUT', '/v1/records/notes', { token, body: '{}' }, 405, 'method_not_allowed');
      assert.match(String(put.headers.allow), /POST/);
      const patch = await call('PATCH', `/v1/records/notes/${randomUUID()}`, { token, body: '{}' }, 405, 'method_not_allowed');
      assert.match(String(patch.headers.allow), /GET/);
    });
  });

  describe('408-429', () => {
    it('408 request_timeout for a body that stops arriving', async () => {
      const held = hold('/v1/records/notes', 100, '{"title":');
      try {
        const res = await answered(held);
        expectDocumented('POST', '/v1/records/notes', res, 408, 'request_timeout');
      } finally {
        held.stop();
      }
    });

    it('409 conflict for an Idempotency-Key reused with another body', async () => {
      const key = `k-${randomUUID()}`;
      await post('notes', { title: 'first' }, 201, undefined, { 'idempotency-key': key });
      await post('notes', { title: 'first' }, 201, undefined, { 'idempotency-key': key });
      await post('notes', { title: 'second' }, 409, 'conflict', { 'idempotency-key': key });
    });

    it('413 body_too_large, 414 uri_too_long and 415 unsupported_media_type', async () => {
      // Announced, not sent: nginx refuses it from Content-Length, before reading the body.
      const big = hold('/v1/records/notes', MAX_BODY_BYTES + 1, '{"title":');
      try {
        const res = await answered(big);
        expectDocumented('POST', '/v1/records/notes', res, 413, 'body_too_large');
      } finally {
        big.stop();
      }
      await call('GET', `/v1/records/notes/${'a'.repeat(9000)}`, { token }, 414, 'uri_too_long');
      await call('POST', '/v1/records/notes', { token, body: '{"title":"t"}', headers: { 'content-type': 'text/plain' } }, 415, 'unsupported_media_type');
    });

    it('422 for each rule of the body: forbidden_key, too_deep, too_many_keys, string_too_long, not_an_object, schema_violation', async () => {
      let deep: unknown = 1;
      for (let i = 0; i < DEFAULT_JSON_LIMITS.maxDepth + 1; i++) deep = { d: deep };
      const cases: [unknown, string][] = [
        [{ title: 't', $where: '1' }, 'forbidden_key'],
        [deep, 'too_deep'],
        [Object.fromEntries(Array.from({ length: DEFAULT_JSON_LIMITS.maxKeys + 1 }, (_, i) => [`k${i}`, 0])), 'too_many_keys'],
        [{ title: 's'.repeat(DEFAULT_JSON_LIMITS.maxStringLength + 1) }, 'string_too_long'],
        [['title'], 'not_an_object'],
        [{ body: 'no title' }, 'schema_violation'],
      ];
      for (const [record, code] of cases) await post('notes', record, 422, code);
    });

    it('429 rate_limited past the connections one address may hold', async () => {
      // One more held request than the address may have: nginx counts each once it has read
      // its headers and refuses the one past the limit (or a request sent while they are
      // held) with 429, before any body is read. Held bodies end at the app's body deadline.
      const path = '/v1/records/notes';
      const holders = Array.from({ length: CONNECTIONS_PER_ADDRESS + 1 }, () => hold(path, 1000, '{"title":'));
      try {
        const limited = await waitFor('a 429 while the holders are open', () => firstAnswer(holders, 429), BODY_TIMEOUT_MS - 500, 50);
        expectDocumented('POST', path, limited, 429, 'rate_limited');
      } finally {
        for (const h of holders) h.stop();
      }
      // Positive control: with the holders gone the same address is served.
      await waitFor('the limit to clear', async () => (await api.send('GET', `/v1/records/notes/${randomUUID()}`, { token })).status === 404, 10_000, 200);
    });
  });

  describe('5xx', () => {
    it('500 record_unreadable for a record whose ciphertext was altered at rest, listed as a stub (200)', async () => {
      const { id } = (await post('notes', { title: 'tampered' }, 201)).json as { id: string };
      const changed = await queryCore<number>(
        stack,
        `records.findOne({ _id: ${JSON.stringify(id)} }).then((d) => { const t = Buffer.from(d.enc.tag.buffer); t[0] ^= 1; ` +
          `return records.updateOne({ _id: d._id }, { $set: { 'enc.tag': new (require('/app/node_modules/mongodb').Binary)(t) } }); }).then((r) => r.modifiedCount)`,
      );
      assert.equal(changed, 1);
      await call('GET', `/v1/records/notes/${id}`, { token }, 500, 'record_unreadable');
      const listed = await call('GET', '/v1/records/notes?limit=100', { token }, 200);
      const stub = (listed.json as { records: { id: string; error?: string; data?: unknown }[] }).records.find((r) => r.id === id);
      assert.deepEqual([stub?.error, stub?.data], ['record_unreadable', undefined]);
    });

    it('503 overloaded with Retry-After while a declared body fills the gateway’s pending bytes', async () => {
      // The held body is charged all its declared bytes (MAX_PENDING_BYTES here): a write
      // sent while it is held is refused from its headers. Should bytes of an earlier case
      // still be pending when it arrives, the held request is the one refused: the same answer.
      const path = '/v1/records/notes';
      const held = hold(path, MAX_BODY_BYTES, '{"title":');
      const seen: number[] = [];
      try {
        const refused = await waitFor('a 503 while the large body is pending', async () => {
          const mine = await firstAnswer([held], 503);
          if (mine) return mine;
          const res = await api.post('notes', { title: 'small' }, token);
          seen.push(res.status);
          return res.status === 503 ? res : undefined;
        }, BODY_TIMEOUT_MS - 500, 100).catch((err: Error) => assert.fail(`${err.message}; the small writes were answered ${seen.join(',')}`));
        expectDocumented('POST', path, refused, 503, 'overloaded');
        assert.equal(refused.headers['retry-after'], '1');
      } finally {
        held.stop();
      }
    });

    it('504 deadline_exceeded while core is paused', async () => {
      await stack.container('core').pause();
      try {
        await call('GET', `/v1/records/notes/${randomUUID()}`, { token }, 504, 'deadline_exceeded');
      } finally {
        await stack.container('core').unpause();
      }
      await waitFor('core to answer again', async () => (await api.send('GET', `/v1/records/notes/${randomUUID()}`, { token })).status === 404, 60_000, 500);
    });

    it('503 no_tunnel while no broker is connected', async () => {
      await stack.container('broker').stop({ t: 10 });
      try {
        const path = `/v1/records/notes/${randomUUID()}`;
        const res = await waitFor('a 503 no_tunnel', async () => {
          const r = await api.send('GET', path, { token });
          return r.status === 503 ? r : undefined;
        }, 60_000, 500);
        expectDocumented('GET', path, res, 503, 'no_tunnel');
      } finally {
        await stack.container('broker').start();
      }
      await stack.waitHealthy('broker');
      await waitFor('a request through the new tunnel', async () => (await api.send('GET', `/v1/records/notes/${randomUUID()}`, { token })).status === 404, 120_000, 500);
    });
  });
});
