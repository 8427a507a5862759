import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { ApiError } from '../../../../services/common/errors/api-error';
import { canonicalJson } from '../../../../services/common/json/canonical';
import { RecordStore, type NewRecord } from '../../../../services/core/storage/records';
import { startScratchDatabase, type TestDatabase, testDataKeys } from '../../../support/core-fixtures';

/** One key file for the whole file: records written before a restart are read after it. */
const dataKeys = testDataKeys();

interface IndexInfo {
  name: string;
  key: Record<string, number>;
}

function recordDoc(data: Record<string, unknown>, over: Partial<NewRecord> = {}): NewRecord {
  return { _id: randomUUID(), collection: 'notes', client: 'app-1', tokenId: '0123456789abcdef', data, ...over };
}

describe('core RecordStore on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let store: RecordStore;

  before(async () => {
    database = await startScratchDatabase();
    store = new RecordStore(database.db, dataKeys);
    await store.init();
  });

  after(async () => {
    await database?.cleanup();
  });

  const indexes = async (name: string): Promise<IndexInfo[]> => (await database.db.collection(name).listIndexes().toArray()) as IndexInfo[];
  const count = (id: string): Promise<number> => database.db.collection('records').countDocuments({ _id: id as never });

  it('creates the records and tokens indexes on init', async () => {
    const recordIndexes = await indexes('records');
    const tokenIndexes = await indexes('tokens');
    const byName = (list: IndexInfo[], name: string) => list.find((i) => i.name === name);
    assert.deepEqual(byName(recordIndexes, 'collection_createdAt')?.key, { collection: 1, createdAt: 1 });
    assert.deepEqual(byName(tokenIndexes, 'createdAt')?.key, { createdAt: 1 });
  });

  it('init is idempotent on a database that already has the indexes', async () => {
    await store.init();
    const names = (await indexes('records')).map((i) => i.name).sort();
    assert.deepEqual(names, ['_id_', 'collection_createdAt']);
  });

  it('returns an inserted record by collection and id', async () => {
    const doc = recordDoc({ title: 'hello', n: 3, nested: { ok: true } });
    const at = new Date('2024-05-01T10:00:00.000Z');
    assert.equal(await store.insert(doc, { now: at }), true);
    assert.deepEqual(await store.get('notes', doc._id), { id: doc._id, collection: 'notes', data: doc.data, createdAt: at.toISOString() });
  });

  it('stores one document when the same request is inserted twice and reports the replay', async () => {
    const doc = recordDoc({ title: 'once' });
    assert.equal(await store.insert(doc), true);
    assert.equal(await store.insert({ ...doc, data: { title: 'once' } }), false);
    assert.equal(await count(doc._id), 1);
  });

  it('refuses the same request id with a different body as a 409 conflict and keeps the original', async () => {
    const doc = recordDoc({ title: 'original' });
    await store.insert(doc);
    const other = { title: 'overwrite' };
    await assert.rejects(
      store.insert({ ...doc, data: other }),
      (err: unknown) => err instanceof ApiError && err.status === 409 && err.code === 'conflict',
    );
    assert.equal(await count(doc._id), 1);
    assert.deepEqual((await store.get('notes', doc._id))?.data, { title: 'original' });
  });

  it('refuses the same request id in a different collection as a conflict', async () => {
    const doc = recordDoc({ title: 'in notes' });
    await store.insert(doc);
    await assert.rejects(store.insert({ ...doc, collection: 'orders' }), (err: unknown) => err instanceof ApiError && err.status === 409);
    assert.equal(await store.get('orders', doc._id), undefined);
    assert.deepEqual((await store.get('notes', doc._id))?.data, { title: 'in notes' });
    assert.equal(await count(doc._id), 1);
  });

  it('refuses the same request id from a different client as a conflict', async () => {
    const doc = recordDoc({ title: 'mine' });
    await store.insert(doc);
    await assert.rejects(store.insert({ ...doc, client: 'app-2', tokenId: 'fedcba9876543210' }), (err: unknown) => err instanceof ApiError && err.status === 409);
    assert.equal(await count(doc._id), 1);
  });

  it('treats the same record from another token of the same client as a replay', async () => {
    const doc = recordDoc({ title: 'rotated' });
    assert.equal(await store.insert(doc), true);
    assert.equal(await store.insert({ ...doc, tokenId: 'fedcba9876543210' }), false);
    assert.equal(await count(doc._id), 1);
  });

  it('treats the same record with its keys in another order as a replay, and other content as a conflict', async () => {
    const first = JSON.parse('{"title":"order","meta":{"b":2,"a":1},"tags":["x","y"]}') as Record<string, unknown>;
    const reordered = JSON.parse('{"tags":["x","y"],"meta":{"a":1,"b":2},"title":"order"}') as Record<string, unknown>;
    const doc = recordDoc(first);
    assert.equal(await store.insert(doc), true);
    assert.equal(await store.insert({ ...doc, data: reordered }), false);
    const arrayReordered = { ...reordered, tags: ['y', 'x'] };
    await assert.rejects(store.insert({ ...doc, data: arrayReordered }), (err: unknown) => err instanceof ApiError && err.code === 'conflict');
    assert.equal(await count(doc._id), 1);
    assert.deepEqual((await store.get('notes', doc._id))?.data, first);
  });

  it('replays a record stored before clients existed for the token that stored it, whose client is its id', async () => {
    const data = { title: 'legacy' };
    const id = randomUUID();
    // As the first version wrote it: no client field, content in clear with its SHA-256.
    await database.db.collection('records').insertOne({ _id: id as never, collection: 'notes', tokenId: '0123456789abcdef', bodySha256: createHash('sha256').update(canonicalJson(data)).digest('hex'), data, createdAt: new Date() });
    assert.equal(await store.insert(recordDoc(data, { _id: id, client: '0123456789abcdef' })), false);
    await assert.rejects(store.insert(recordDoc(data, { _id: id, client: 'app-1' })), (err: unknown) => err instanceof ApiError && err.code === 'conflict');
    assert.equal(await count(id), 1);
  });

  it('stores one document when the same request arrives many times at once', async () => {
    const doc = recordDoc({ title: 'racing retries' });
    const results = await Promise.all(Array.from({ length: 10 }, () => store.insert({ ...doc })));
    assert.equal(results.filter((r) => r).length, 1);
    assert.equal(await count(doc._id), 1);
  });

  it('refuses an infinite number (JSON 1e400) as a 422 client error, storing nothing, alone or in a batch', async () => {
    // The HTTP layer refuses it first; this is the store's own refusal behind that, since
    // JSON text would have turned it into null.
    const doc = recordDoc({ n: JSON.parse('1e400') as number });
    const isSchemaViolation = (err: unknown): boolean => err instanceof ApiError && err.status === 422 && err.code === 'schema_violation';
    await assert.rejects(store.insert(doc), isSchemaViolation);
    const fine = recordDoc({ n: 1 });
    const [bad, good] = await store.insertMany([doc, fine]);
    assert.ok(isSchemaViolation(bad), String(bad));
    assert.equal(good, true);
    assert.equal(await count(doc._id), 0);
  });

  it('stores nested arrays, which the database never sees in clear (FerretDB refused them as plain documents)', async () => {
    const doc = recordDoc({ matrix: [[1, 2], [3, 4]] });
    assert.equal(await store.insert(doc), true);
    assert.deepEqual((await store.get('notes', doc._id))?.data, { matrix: [[1, 2], [3, 4]] });
  });

  it('finds nothing when the id is asked for under another collection', async () => {
    const doc = recordDoc({ title: 'private' });
    await store.insert(doc);
    assert.equal(await store.get('orders', doc._id), undefined);
    assert.notEqual(await store.get('notes', doc._id), undefined);
  });

  it('finds nothing for an id that was never stored', async () => {
    assert.equal(await store.get('notes', randomUUID()), undefined);
  });
});
