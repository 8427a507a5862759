import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { countRecords } from '../support/stack/core-db';
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
  const recordCount = (): Promise<number> => countRecords(stack);

  let before0: Record<string, number>;
  let count0: number;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    port = await stack.hostPort('gateway', 443);
    ca = (await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt'])).stdout;
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
    before0 = await restarts();
    count0 = await recordCount();
  });

  after(async () => {
    await stack?.down();
  });

  const cases: { what: string; body?: string | Buffer; headers?: Record<string, string>; path?: string; status: number; code: string }[] = [
    { what: 'malformed JSON', body: '{"title": "x",', status: 400, code: 'bad_json' },
    { what: 'a JSON array instead of an object', body: '[1,2,3]', status: 422, code: 'not_an_object' },
    { what: 'nesting 10,000 deep', body: `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`, status: 422, code: 'too_deep' },
    { what: 'a __proto__ key', body: '{"title":"x","__proto__":{"admin":true}}', status: 422, code: 'forbidden_key' },
    { what: 'a constructor key', body: '{"title":"x","constructor":{"prototype":{}}}', status: 422, code: 'forbidden_key' },
    { what: 'a $where operator', body: '{"title":"x","$where":"sleep(1000)"}', status: 422, code: 'forbidden_key' },
    { what: 'a nested $gt operator', body: '{"title":{"$gt":""}}', status: 422, code: 'forbidden_key' },
    { what: 'a dotted key', body: '{"title":"x","a.b":1}', status: 422, code: 'forbidden_key' },
    { what: 'invalid UTF-8', body: Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]), status: 400, code: 'bad_encoding' },
    { what: 'a lone surrogate escape', body: '{"title":"\\ud800"}', status: 400, code: 'bad_encoding' },
    { what: 'a number out of range', body: '{"title":"x","n":1e400}', status: 422, code: 'schema_violation' },
    { what: 'a field the schema does not allow', body: '{"title":"x","admin":true}', status: 422, code: 'schema_violation' },
    { what: 'text/plain', body: '{"title":"x"}', headers: { 'content-type': 'text/plain' }, status: 415, code: 'unsupported_media_type' },
    { what: 'JSON in another charset', body: '{"title":"x"}', headers: { 'content-type': 'application/json; charset=utf-16' }, status: 415, code: 'unsupported_media_type' },
    { what: 'a gzip body', body: '{"title":"x"}', headers: { 'content-encoding': 'gzip' }, status: 415, code: 'unsupported_media_type' },
    { what: 'a 2 MiB body', body: JSON.stringify({ title: 'x', body: 'y'.repeat(2 * 1024 * 1024) }), status: 413, code: 'body_too_large' },
    { what: 'a collection name with $', path: '/v1/records/%24where', body: '{"title":"x"}', status: 400, code: 'bad_collection' },
    { what: 'an unknown collection', path: '/v1/records/secrets', body: '{"title":"x"}', status: 404, code: 'unknown_collection' },
  ];

  for (const c of cases) {
    it(`refuses ${c.what} with ${c.status} ${c.code} and stores nothing`, async () => {
      const res = await api.send('POST', c.path ?? '/v1/records/notes', { token, body: c.body ?? '', ...(c.headers ? { headers: c.headers } : {}) });
      assert.equal(res.status, c.status, res.text.slice(0, 300));
      assert.equal((res.json as { error: { code: string } }).error.code, c.code);
    });
  }

  it('refuses an operator object as a record id and a token that is not a token', async () => {
    const byId = await api.send('GET', `/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`, { token });
    assert.equal(byId.status, 400);
    const byToken = await api.send('POST', '/v1/records/notes', { token: '{"$ne":null}', body: '{"title":"x"}' });
    assert.equal(byToken.status, 401);
  });

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

  it('changed nothing at core and restarted no service', async () => {
    assert.equal(await recordCount(), count0);
    assert.deepEqual(await restarts(), before0);
  });
});
