import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ferretdbSqliteFile } from '../../../../services/core/db/engine';
import { SqliteWalPurge } from '../../../../services/core/db/sqlite-wal-purge';
import { coreRequest, createCorePki, errorCode, startCoreServer, startScratchDatabase, type CorePki, type CoreResponse, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';
import { silentLogger } from '../../../support/logger';

interface Page {
  records: { id: string; collection: string; data?: Record<string, unknown>; createdAt: string; error?: string }[];
  nextCursor: string | null;
}

/**
 * Core's list and erase routes over real HTTPS with mutual TLS, on a real FerretDB, wired
 * as services/core/main.ts wires them (the WAL purge included): the query parsed again
 * from the broker's URL, the read and delete scopes, the idempotent erase.
 */
describe('core list and erase routes over mTLS on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  let purge: SqliteWalPurge;
  const tok = { all: '', reader: '', writer: '', deleter: '', ordersAll: '' };

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    purge = new SqliteWalPurge(ferretdbSqliteFile(database.cfg), silentLogger());
    core = await startCoreServer({ pki, db: database.db, erasePurge: purge });
    tok.all = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write', 'delete'] })).token;
    tok.reader = (await core.tokens.create({ collections: ['notes'], scopes: ['read'] })).token;
    tok.writer = (await core.tokens.create({ collections: ['notes'], scopes: ['write'] })).token;
    tok.deleter = (await core.tokens.create({ collections: ['notes'], scopes: ['delete'] })).token;
    tok.ordersAll = (await core.tokens.create({ collections: ['orders'], scopes: ['read', 'write', 'delete'] })).token;
  });

  after(async () => {
    purge?.stop();
    await core?.close();
    await database?.cleanup();
  });

  function send(method: string, path: string, token: string, body?: string): Promise<CoreResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'x-request-id': randomUUID() };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return coreRequest({ port: core.port, method, path, headers, ca: pki.ca.certPem, client: pki.broker, ...(body !== undefined ? { body } : {}) });
  }

  async function store(collection: string, token: string, record: Record<string, unknown>): Promise<string> {
    const res = await send('POST', `/v1/records/${collection}`, token, JSON.stringify(record));
    assert.equal(res.status, 201, res.text);
    return (res.json as { id: string }).id;
  }

  it('lists with a read token page by page, and refuses a token without read with 403', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await store('notes', tok.all, { title: `n${i}` }));
    const first = await send('GET', '/v1/records/notes?limit=3', tok.reader);
    assert.equal(first.status, 200, first.text);
    const page1 = first.json as Page;
    assert.equal(page1.records.length, 3);
    assert.equal(typeof page1.nextCursor, 'string');
    const second = await send('GET', `/v1/records/notes?limit=3&cursor=${page1.nextCursor}`, tok.reader);
    const page2 = second.json as Page;
    const listed = [...page1.records, ...page2.records].map((r) => r.id);
    assert.equal(page2.nextCursor, null);
    assert.deepEqual(listed.filter((id) => ids.includes(id)), ids);
    assert.deepEqual(page1.records[0]!.data, { title: 'n0' });
    for (const token of [tok.writer, tok.deleter, tok.ordersAll]) {
      const res = await send('GET', '/v1/records/notes', token);
      assert.equal(res.status, 403, res.text);
      assert.equal(errorCode(res), 'forbidden');
    }
  });

  it("refuses a hostile list query with 400 bad_query and another collection's or a forged cursor with 400 bad_cursor", async () => {
    for (let i = 0; i < 2; i++) await store('orders', tok.ordersAll, { sku: `s${i}`, qty: 1 });
    for (const q of ['createdFrom[$ne]=x', 'createdFrom%5B%24ne%5D=x', 'limit=1&limit=2', 'limit=101', 'limit=-1', 'limit=99999999999', 'cursor[$gt]=', 'sort=_id', 'createdTo=2026-11-28']) {
      const res = await send('GET', `/v1/records/notes?${q}`, tok.all);
      assert.equal(res.status, 400, `${q}: ${res.text}`);
      assert.equal(errorCode(res), 'bad_query', q);
    }
    const orders = (await send('GET', '/v1/records/orders?limit=1', tok.ordersAll)).json as Page;
    assert.equal(typeof orders.nextCursor, 'string');
    const forged = [orders.nextCursor!, Buffer.from('{"$gt":""}').toString('base64url'), Buffer.from('{"createdAt":{"$gt":0}}').toString('base64url')];
    for (const cursor of forged) {
      const res = await send('GET', `/v1/records/notes?cursor=${cursor}`, tok.all);
      assert.equal(res.status, 400, res.text);
      assert.equal(errorCode(res), 'bad_cursor');
    }
    // Positive control: the orders cursor is good in orders.
    assert.equal((await send('GET', `/v1/records/orders?limit=1&cursor=${orders.nextCursor!}`, tok.ordersAll)).status, 200);
  });

  it('erases with a delete token, answering the same 200 every time, after which GET is 404 and the list leaves it out', async () => {
    const id = await store('notes', tok.all, { title: 'to erase' });
    assert.equal((await send('GET', `/v1/records/notes/${id}`, tok.reader)).status, 200);
    const answers: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await send('DELETE', `/v1/records/notes/${id}`, tok.deleter);
      assert.equal(res.status, 200, res.text);
      answers.push(res.json);
    }
    assert.deepEqual(answers, [{ id, erased: true }, { id, erased: true }, { id, erased: true }]);
    const never = randomUUID();
    assert.deepEqual((await send('DELETE', `/v1/records/notes/${never}`, tok.deleter)).json, { id: never, erased: true });
    const read = await send('GET', `/v1/records/notes/${id}`, tok.reader);
    assert.equal(read.status, 404);
    assert.equal(errorCode(read), 'not_found');
    assert.equal(await database.db.collection('records').countDocuments({ _id: id as never }), 0);
    const listed = (await send('GET', '/v1/records/notes?limit=100', tok.reader)).json as Page;
    assert.ok(!listed.records.some((r) => r.id === id));
  });

  it("refuses DELETE without the delete scope with 403, and leaves another collection's record when asked through this one", async () => {
    const id = await store('notes', tok.all, { title: 'kept' });
    for (const token of [tok.reader, tok.writer, tok.ordersAll]) {
      const res = await send('DELETE', `/v1/records/notes/${id}`, token);
      assert.equal(res.status, 403, res.text);
      assert.equal(errorCode(res), 'forbidden');
    }
    // Through orders (a token that may delete there): the same 200, and the notes record stays.
    const other = await send('DELETE', `/v1/records/orders/${id}`, tok.ordersAll);
    assert.deepEqual([other.status, other.json], [200, { id, erased: true }]);
    assert.equal((await send('GET', `/v1/records/notes/${id}`, tok.reader)).status, 200);
    const bad = await send('DELETE', `/v1/records/notes/${encodeURIComponent('{"$gt":""}')}`, tok.deleter);
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), 'bad_record_id');
    assert.equal((await send('GET', `/v1/records/notes/${id}`, tok.reader)).status, 200, 'positive control: the record is still there');
  });
});
