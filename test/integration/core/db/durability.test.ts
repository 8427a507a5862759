import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { RecordStore } from '../../../../services/core/storage/records';
import { startScratchDatabase, startTestDatabase, type TestDatabase } from '../../../support/core-fixtures';
import { waitFor } from '../../../support/wait';

/** Acknowledged inserts: 200 one after the other, then 100 in flight at once. */
async function insertAcknowledged(store: RecordStore): Promise<Map<string, Record<string, unknown>>> {
  const acked = new Map<string, Record<string, unknown>>();
  const one = async (i: number): Promise<void> => {
    const id = randomUUID();
    const data = { i, text: `record ${i}`, nested: { at: i * 7 } };
    const stored = await store.insert({ _id: id, collection: 'notes', tokenId: '0123456789abcdef', bodySha256: RecordStore.bodyHash(JSON.stringify(data)), data });
    assert.equal(stored, true);
    acked.set(id, data);
  };
  for (let i = 0; i < 200; i++) await one(i);
  await Promise.all(Array.from({ length: 100 }, (_, k) => one(200 + k)));
  return acked;
}

async function assertAllReadable(database: TestDatabase, acked: Map<string, Record<string, unknown>>): Promise<void> {
  const docs = await database.db.collection<{ _id: string; data: unknown }>('records').find({}).toArray();
  const found = new Map(docs.map((d) => [d._id, d.data]));
  const missing = [...acked.keys()].filter((id) => !found.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged records were lost`);
  for (const [id, data] of acked) assert.deepEqual(found.get(id), data);
  // And through the store, as the API reads them.
  const store = new RecordStore(database.db);
  for (const id of [...acked.keys()].filter((_, i) => i % 50 === 0)) assert.deepEqual((await store.get('notes', id))?.data, acked.get(id));
}

function killHard(pid: number | undefined): number {
  assert.ok(pid, 'the database child has a pid');
  process.kill(pid, 'SIGKILL');
  return pid;
}

describe('core database durability on FerretDB (kill -9)', function () {
  this.timeout(30_000);
  let database: (TestDatabase & { dataDir: string; cleanup: () => Promise<void> }) | undefined;
  let reopened: TestDatabase | undefined;

  afterEach(async () => {
    await reopened?.stop();
    reopened = undefined;
    await database?.cleanup();
    database = undefined;
  });

  it('keeps every acknowledged record when FerretDB is killed and its supervisor restarts it', async () => {
    database = await startScratchDatabase();
    const store = new RecordStore(database.db);
    await store.init();
    const acked = await insertAcknowledged(store);
    assert.equal(acked.size, 300);

    const restarted = once(database.child, 'started') as Promise<[number]>;
    const exited = once(database.child, 'exited') as Promise<[number | null, string | null]>;
    const oldPid = killHard(database.child.pid);
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    const [newPid] = await restarted;
    assert.notEqual(newPid, oldPid);
    assert.equal(database.child.restarts, 1);

    // The same client reconnects (and logs in again) once the restarted server answers.
    await waitFor('the restarted database to answer', async () => (await database!.db.command({ ping: 1 })).ok === 1, 15_000, 200);
    assert.equal(await database.db.collection('records').countDocuments({}), acked.size);
    await assertAllReadable(database, acked);
  });

  it('keeps every acknowledged record when FerretDB is killed and a fresh start opens the same data dir', async () => {
    database = await startScratchDatabase();
    const store = new RecordStore(database.db);
    await store.init();
    const acked = await insertAcknowledged(store);

    const exited = once(database.child, 'exited') as Promise<[number | null, string | null]>;
    killHard(database.child.pid);
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    await database.stop(); // no restart by the old supervisor

    reopened = await startTestDatabase(database.dataDir);
    assert.equal(await reopened.db.collection('records').countDocuments({}), acked.size);
    await assertAllReadable(reopened, acked);
  });
});
