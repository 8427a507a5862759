import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { documentsHolding } from '../support/stack/core-search';
import { waitFor } from '../support/wait';

/**
 * Hostile input at the public API, sent over HTTPS to the gateway's published port as any
 * client on the internet could. Each gets the right 4xx (or a closed connection), nothing
 * is stored at core, and no service restarts.
 */
describe('hostile input at the public API', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;
  let ca: string;
  let port: number;

  const restarts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const s of ['gateway', 'broker', 'core']) out[s] = (await stack.inspect(s)).RestartCount;
    return out;
  };
  /** A fresh marker for one request's payload; every one issued is checked again at the end. */
  const issued: string[] = [];
  const newCanary = (): string => {
    const c = `canary-${randomBytes(12).toString('hex')}`;
    issued.push(c);
    return c;
  };
  const assertNotStored = async (canary: string): Promise<void> => {
    assert.deepEqual(await documentsHolding(stack, [canary]), { [canary]: 0 }, 'core stored the refused payload');
  };

  let before0: Record<string, number>;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    port = await stack.hostPort('gateway', 443);
    ca = (await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt'])).stdout;
    // Positive control for every "stores nothing" below: a valid record carrying a canary,
    // sent the same way, is found in core's database by the same search.
    const control = `canary-${randomBytes(12).toString('hex')}`;
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready', body: control }, token)).status === 201, 60_000, 250);
    assert.deepEqual(await documentsHolding(stack, [control]), { [control]: 1 }, 'the search did not find a record core stored');
    before0 = await restarts();
  });

  after(async () => {
    await stack?.down();
  });

  // Every body carries the case's canary (`c`) where the request's content goes, so that
  // whatever core kept of it would be found.
  const cases: { what: string; body: (c: string) => string | Buffer; headers?: Record<string, string>; path?: string; status: number; code: string }[] = [
    { what: 'malformed JSON', body: (c) => `{"title": "${c}",`, status: 400, code: 'bad_json' },
    { what: 'a JSON array instead of an object', body: (c) => `["${c}",2,3]`, status: 422, code: 'not_an_object' },
    { what: 'nesting 10,000 deep', body: (c) => `${'{"a":'.repeat(10_000)}"${c}"${'}'.repeat(10_000)}`, status: 422, code: 'too_deep' },
    { what: 'a __proto__ key', body: (c) => `{"title":"${c}","__proto__":{"admin":true}}`, status: 422, code: 'forbidden_key' },
    { what: 'a constructor key', body: (c) => `{"title":"${c}","constructor":{"prototype":{}}}`, status: 422, code: 'forbidden_key' },
    { what: 'a $where operator', body: (c) => `{"title":"${c}","$where":"sleep(1000)"}`, status: 422, code: 'forbidden_key' },
    { what: 'a nested $gt operator', body: (c) => `{"title":{"$gt":""},"body":"${c}"}`, status: 422, code: 'forbidden_key' },
    { what: 'a dotted key', body: (c) => `{"title":"${c}","a.b":1}`, status: 422, code: 'forbidden_key' },
    { what: 'invalid UTF-8', body: (c) => Buffer.concat([Buffer.from(`{"t":"${c}`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), status: 400, code: 'bad_encoding' },
    { what: 'a lone surrogate escape', body: (c) => `{"title":"${c}\\ud800"}`, status: 400, code: 'bad_encoding' },
    { what: 'a number out of range', body: (c) => `{"title":"${c}","n":1e400}`, status: 422, code: 'schema_violation' },
    { what: 'a field the schema does not allow', body: (c) => `{"title":"${c}","admin":true}`, status: 422, code: 'schema_violation' },
    { what: 'text/plain', body: (c) => `{"title":"${c}"}`, headers: { 'content-type': 'text/plain' }, status: 415, code: 'unsupported_media_type' },
    { what: 'JSON in another charset', body: (c) => `{"title":"${c}"}`, headers: { 'content-type': 'application/json; charset=utf-16' }, status: 415, code: 'unsupported_media_type' },
    { what: 'a gzip body', body: (c) => `{"title":"${c}"}`, headers: { 'content-encoding': 'gzip' }, status: 415, code: 'unsupported_media_type' },
    { what: 'a 2 MiB body', body: (c) => JSON.stringify({ title: c, body: 'y'.repeat(2 * 1024 * 1024) }), status: 413, code: 'body_too_large' },
    { what: 'a collection name with $', path: '/v1/records/%24where', body: (c) => `{"title":"${c}"}`, status: 400, code: 'bad_collection' },
    { what: 'an unknown collection', path: '/v1/records/secrets', body: (c) => `{"title":"${c}"}`, status: 404, code: 'unknown_collection' },
  ];

  for (const c of cases) {
    it(`refuses ${c.what} with ${c.status} ${c.code} and stores nothing`, async () => {
      const canary = newCanary();
      const res = await api.send('POST', c.path ?? '/v1/records/notes', { token, body: c.body(canary), ...(c.headers ? { headers: c.headers } : {}) });
      assert.equal(res.status, c.status, res.text.slice(0, 300));
      assert.equal((res.json as { error: { code: string } }).error.code, c.code);
      await assertNotStored(canary);
    });
  }

  it('refuses an operator object as a record id, and a token that is not a token without storing its record', async () => {
    const byId = await api.send('GET', `/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`, { token });
    assert.equal(byId.status, 400);
    const canary = newCanary();
    const byToken = await api.send('POST', '/v1/records/notes', { token: '{"$ne":null}', body: `{"title":"${canary}"}` });
    assert.equal(byToken.status, 401);
    await assertNotStored(canary);
  });

  // List and erase: plain tests (not a nested suite, which mocha would run after the last
  // check below), sharing one setup made by the first that needs it.
  {
    let full = '';
    let ordersToken = '';
    let kept = '';
    const code = (res: { json: unknown }): string | undefined => (res.json as { error?: { code?: string } } | undefined)?.error?.code;
    let setup: Promise<void> | undefined;
    const listSetup = (): Promise<void> => (setup ??= (async () => {
      full = await createToken(stack, ['notes'], 'read,write,delete');
      ordersToken = await createToken(stack, ['orders'], 'read,write');
      const res = await api.post('notes', { title: 'must survive every hostile erase' }, full);
      assert.equal(res.status, 201, res.text);
      kept = (res.json as { id: string }).id;
      for (let i = 0; i < 2; i++) {
        const order = await api.post('orders', { customer: 'c', items: [{ sku: `SKU-${i}`, quantity: 1 }] }, ordersToken);
        assert.equal(order.status, 201, order.text);
      }
    })());

    const queries: { what: string; query: string; code: string }[] = [
      { what: 'an operator in a filter (createdFrom[$ne]=x)', query: 'createdFrom[$ne]=x', code: 'bad_query' },
      { what: 'an operator in a filter, percent-encoded', query: 'createdFrom%5B%24ne%5D=x', code: 'bad_query' },
      { what: 'an operator object as a filter value', query: `createdFrom=${encodeURIComponent('{"$gt":""}')}`, code: 'bad_query' },
      { what: 'an operator on the cursor (cursor[$gt]=)', query: 'cursor[$gt]=', code: 'bad_query' },
      { what: 'a cursor that base64-decodes to {"$gt":""}', query: `cursor=${Buffer.from('{"$gt":""}').toString('base64url')}`, code: 'bad_cursor' },
      { what: 'a cursor that base64-decodes to a createdAt operator', query: `cursor=${Buffer.from('{"createdAt":{"$gt":0},"_id":{"$ne":null}}').toString('base64url')}`, code: 'bad_cursor' },
      { what: 'a huge limit', query: 'limit=1000000000', code: 'bad_query' },
      { what: 'a limit one past the maximum', query: 'limit=101', code: 'bad_query' },
      { what: 'a negative limit', query: 'limit=-1', code: 'bad_query' },
      { what: 'a zero limit', query: 'limit=0', code: 'bad_query' },
      { what: 'a repeated limit', query: 'limit=5&limit=6', code: 'bad_query' },
      { what: 'a repeated filter', query: 'createdFrom=2026-01-01T00:00:00Z&createdFrom=2020-01-01T00:00:00Z', code: 'bad_query' },
      { what: 'an unknown parameter', query: 'sort=-createdAt', code: 'bad_query' },
      { what: 'a timestamp without a time zone', query: 'createdTo=2026-11-28T10:00:00', code: 'bad_query' },
      { what: 'a 600-character cursor', query: `cursor=${'A'.repeat(600)}`, code: 'bad_query' },
    ];
    for (const q of queries) {
      it(`refuses a list with ${q.what} with 400 ${q.code}`, async () => {
        await listSetup();
        const res = await api.send('GET', `/v1/records/notes?${q.query}`, { token: full });
        assert.equal(res.status, 400, res.text.slice(0, 300));
        assert.equal(code(res), q.code);
      });
    }

    it("refuses another collection's cursor with 400 bad_cursor, where it pages its own collection (positive control)", async () => {
      await listSetup();
      const orders = await api.send('GET', '/v1/records/orders?limit=1', { token: ordersToken });
      assert.equal(orders.status, 200, orders.text);
      const cursor = (orders.json as { nextCursor: string | null }).nextCursor;
      assert.equal(typeof cursor, 'string');
      const own = await api.send('GET', `/v1/records/orders?limit=1&cursor=${cursor!}`, { token: ordersToken });
      assert.equal(own.status, 200, own.text);
      const res = await api.send('GET', `/v1/records/notes?cursor=${cursor!}`, { token: full });
      assert.equal(res.status, 400, res.text);
      assert.equal(code(res), 'bad_cursor');
      // A cursor issued for other filters on the same collection is another's too.
      const filtered = await api.send('GET', '/v1/records/orders?limit=1&createdFrom=2000-01-01T00:00:00Z', { token: ordersToken });
      const other = (filtered.json as { nextCursor: string }).nextCursor;
      const refiltered = await api.send('GET', `/v1/records/orders?limit=1&cursor=${other}`, { token: ordersToken });
      assert.equal(code(refiltered), 'bad_cursor');
    });

    it('refuses to erase by an operator id or through another collection, and the record stays readable', async () => {
      await listSetup();
      for (const path of [`/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`, `/v1/records/notes/${encodeURIComponent('{"$ne":null}')}`, '/v1/records/notes/%24where']) {
        const res = await api.send('DELETE', path, { token: full });
        assert.equal(res.status, 400, res.text);
        assert.equal(code(res), 'bad_record_id');
      }
      const collectionOp = await api.send('DELETE', `/v1/records/%24where/${kept}`, { token: full });
      assert.equal(collectionOp.status, 400);
      assert.equal(code(collectionOp), 'bad_collection');
      // Another collection the token cannot reach: 403, and its own grant does not stretch to it.
      const orders = await api.send('DELETE', `/v1/records/orders/${kept}`, { token: full });
      assert.equal(orders.status, 403, orders.text);
      const read = await api.get('notes', kept, full);
      assert.equal(read.status, 200, 'a hostile erase removed the record');
    });
  }

  it('refuses oversized headers with 400 JSON', async () => {
    const res = await api.send('GET', '/v1/records/notes/x', { token, headers: { 'x-padding': 'p'.repeat(16 * 1024) } });
    assert.equal(res.status, 400);
    assert.equal((res.json as { error: { code: string } }).error.code, 'headers_too_large');
  });

  it('cuts off a slowloris client that trickles its headers', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', () => resolve()).once('error', reject));
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.write('GET /v1/records/notes/x HTTP/1.1\r\nHost: localhost\r\n');
    const started = Date.now();
    // One header byte every 2 s: a complete request never arrives.
    while (!closed && Date.now() - started < 40_000) {
      socket.write('X');
      await sleep(2000);
    }
    assert.ok(closed, 'the server kept a trickling connection open for 40 s');
  });

  it('restarted no service and, by the end, had stored none of the refused payloads', async () => {
    // Per case the check ran right after the answer; this one also catches a payload
    // stored late (a retry, a queue draining) and a service that crashed after answering.
    assert.deepEqual(await restarts(), before0);
    const held = await documentsHolding(stack, issued);
    assert.deepEqual(Object.entries(held).filter(([, n]) => n > 0), [], 'core holds refused payloads');
  });
});
