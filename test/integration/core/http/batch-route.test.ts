import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { RECORD_BATCH_MAX_RECORDS, RECORD_BATCH_PATH, type RecordBatchItem } from '../../../../services/common/http/record-batch';
import { coreRequest, createCorePki, errorCode, startCoreServer, startScratchDatabase, type CorePki, type CoreResponse, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';

/**
 * Core's batch insert (group commit) over real HTTPS with mutual TLS in front of a real
 * FerretDB: every record answered as the single insert would answer it, the valid ones
 * stored by one database call.
 */
describe('core record batches (group commit) over mTLS on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  let writer = '';
  let reader = '';
  /** Core's database inserts, by how many records each carried (the store's two methods, spied). */
  let inserts: number[] = [];

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    core = await startCoreServer({ pki, db: database.db });
    writer = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
    reader = (await core.tokens.create({ collections: ['notes'], scopes: ['read'] })).token;
    const { records } = core;
    const insertOne = records.insert.bind(records);
    const insertMany = records.insertMany.bind(records);
    records.insert = (doc, opts) => (inserts.push(1), insertOne(doc, opts));
    records.insertMany = (docs, opts) => (inserts.push(docs.length), insertMany(docs, opts));
  });

  beforeEach(() => (inserts = []));

  after(async () => {
    await core?.close();
    await database?.cleanup();
  });

  const item = (over: Partial<RecordBatchItem> = {}): RecordBatchItem => ({ requestId: randomUUID(), collection: 'notes', token: writer, body: JSON.stringify({ n: Math.random() }), ...over });

  function batch(body: unknown, headers: Record<string, string> = {}): Promise<CoreResponse> {
    return coreRequest({
      port: core.port,
      method: 'POST',
      path: RECORD_BATCH_PATH,
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ca: pki.ca.certPem,
      client: pki.broker,
    });
  }

  function results(res: CoreResponse): { status: number; body: { id?: string; error?: { code: string } } }[] {
    assert.equal(res.status, 200, res.text);
    return (res.json as { results: { status: number; body: { id?: string; error?: { code: string } } }[] }).results;
  }

  const count = (ids: string[]): Promise<number> => database.db.collection('records').countDocuments({ _id: { $in: ids as never[] } });

  it('stores every record of a batch with one database call, each answered 201 under its id and readable', async () => {
    const items = Array.from({ length: 20 }, (_, i) => item({ body: JSON.stringify({ i }) }));
    const out = results(await batch({ records: items }));
    assert.deepEqual(
      out,
      items.map((it) => ({ status: 201, body: { id: it.requestId } })),
    );
    assert.deepEqual(inserts, [20], 'one insertMany carried the whole batch');
    assert.equal(await count(items.map((i) => i.requestId)), 20);
    const back = await coreRequest({ port: core.port, path: `/v1/records/notes/${items[7]!.requestId}`, headers: { authorization: `Bearer ${reader}` }, ca: pki.ca.certPem, client: pki.broker });
    assert.deepEqual((back.json as { data: unknown }).data, { i: 7 });
  });

  it("answers each record's refusal as its own, storing the others: bad token, wrong scope, bad body, unstorable value, conflict; a replay is 201", async () => {
    const ok = item();
    const replayed = item({ body: '{"same":true}' });
    const conflicting = item({ body: '{"v":1}' });
    assert.deepEqual(results(await batch({ records: [replayed, conflicting] })).map((r) => r.status), [201, 201]);
    const items = [
      ok,
      item({ token: reader }),
      item({ token: 'nst_0123456789abcdef_' + 'A'.repeat(43) }),
      item({ body: '[1,2]' }),
      item({ body: '{"n":1e400}' }),
      item({ collection: 'orders' }),
      { ...replayed, body: '{ "same" : true }' },
      { ...conflicting, body: '{"v":2}' },
      item({ collection: '$where' }),
    ];
    const out = results(await batch({ records: items }));
    assert.deepEqual(
      out.map((r) => [r.status, r.body.error?.code ?? r.body.id]),
      [
        [201, ok.requestId],
        [403, 'forbidden'],
        [401, 'unauthenticated'],
        [422, 'not_an_object'],
        [422, 'schema_violation'],
        [403, 'forbidden'],
        [201, replayed.requestId],
        [409, 'conflict'],
        [400, 'bad_collection'],
      ],
    );
    assert.equal(await count(items.map((i) => i.requestId)), 3, 'the new record, the replayed and the conflicting first one');
    assert.deepEqual((await core.records.get(conflicting.collection, conflicting.requestId))?.data, { v: 1 });
  });

  it('keys a record sent with an Idempotency-Key by its client and key, as the single insert does', async () => {
    const key = `k-${randomUUID()}`;
    const first = results(await batch({ records: [item({ key, body: '{"k":1}' }), item()] }));
    const again = results(await batch({ records: [item({ key, body: '{"k":1}' }), item()] }));
    assert.equal(first[0]!.status, 201);
    assert.equal(again[0]!.status, 201);
    assert.equal(again[0]!.body.id, first[0]!.body.id, 'a retry under the same key lands on the same record');
    assert.notEqual(first[0]!.body.id, undefined);
  });

  it('refuses a batch that is not one, whole, storing nothing', async () => {
    const before = await database.db.collection('records').countDocuments({});
    for (const [body, status, code] of [
      ['{"records":', 400, 'bad_json'],
      [{ records: [] }, 400, 'bad_request'],
      [{ records: Array.from({ length: RECORD_BATCH_MAX_RECORDS + 1 }, () => item()) }, 400, 'bad_request'],
      [{ records: [{ ...item(), extra: 1 }] }, 400, 'bad_request'],
      [{ records: [item()], more: true }, 400, 'bad_request'],
    ] as const) {
      const res = await batch(body);
      assert.equal(res.status, status, res.text);
      assert.equal(errorCode(res), code);
    }
    assert.equal((await batch({ records: [item()] }, { 'content-type': 'text/plain' })).status, 415);
    assert.equal(await database.db.collection('records').countDocuments({}), before);
    assert.deepEqual(inserts, []);
    // Positive control: the same endpoint stores a well-formed batch.
    assert.equal(results(await batch({ records: [item()] }))[0]!.status, 201);
  });

  it('refuses a certificate of the CA not meant for client authentication, like every other endpoint', async () => {
    const res = await coreRequest({ port: core.port, method: 'POST', path: RECORD_BATCH_PATH, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ records: [item()] }), ca: pki.ca.certPem, client: pki.noEku });
    assert.equal(res.status, 403, res.text);
    assert.deepEqual(inserts, []);
  });
});
