import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { syncDir } from '../../../../services/common/pki/files';
import { RecordStore } from '../../../../services/core/storage/records';
import { startScratchDatabase, startTestDatabase, type TestDatabase, testDataKeys } from '../../../support/core-fixtures';
import { FlakeyDisk } from '../../../support/flakey-disk';
import { memoryLogger } from '../../../support/logger';
import { waitFor } from '../../../support/wait';

/** One key file for the whole file: records written before a restart are read after it. */
const dataKeys = testDataKeys();

type Data = Record<string, unknown>;

/**
 * Inserts records through RecordStore from `concurrency` loops at once, without pause,
 * and remembers each acknowledged one: one insert at a time, or `batch` records per
 * insertMany as core's group commit stores them. halt() lets the insert in flight in each loop
 * settle (acknowledged or failed: the database may be dying) and starts no more.
 */
class Writer {
  readonly acked = new Map<string, Data>();
  private halted = false;
  private failure: Error | undefined;
  private readonly loops: Promise<void>[];

  constructor(
    private readonly store: RecordStore,
    concurrency: number,
    private readonly batch = 1,
  ) {
    this.loops = Array.from({ length: concurrency }, (_, k) => this.loop(k));
  }

  private async loop(k: number): Promise<void> {
    for (let i = 0; !this.halted; i += this.batch) {
      const records = Array.from({ length: this.batch }, (_, j) => {
        const data = { writer: k, i: i + j, text: `record ${k}/${i + j}`, nested: { at: (i + j) * 7 } };
        return { _id: randomUUID(), collection: 'notes', client: 'writer', tokenId: '0123456789abcdef', data };
      });
      try {
        if (this.batch === 1) assert.equal(await this.store.insert(records[0]!), true);
        else {
          const outcomes = await this.store.insertMany(records);
          const failed = outcomes.find((o) => o !== true);
          if (failed !== undefined) throw failed instanceof Error ? failed : new Error('a record of the batch was not stored');
        }
        for (const r of records) this.acked.set(r._id, r.data);
      } catch (err) {
        if (!this.halted) this.failure ??= err instanceof Error ? err : new Error(String(err));
        return;
      }
    }
  }

  halt(): void {
    this.halted = true;
  }

  /** Resolves once every loop ended; rejects with the first failure before halt(). */
  async done(): Promise<void> {
    await Promise.all(this.loops);
    if (this.failure) throw this.failure;
  }

  /** Waits until `n` records are acknowledged, failing early if a loop failed. */
  async until(n: number, timeoutMs = 60_000): Promise<void> {
    await waitFor(`${n} acknowledged records (have ${this.acked.size})`, () => {
      if (this.failure) throw this.failure;
      return this.acked.size >= n;
    }, timeoutMs, 20);
    if (this.failure) throw this.failure;
  }
}

/** Every record in the database, by id, decrypted as the store reads it. */
async function readAll(database: TestDatabase): Promise<Map<string, unknown>> {
  const docs = await database.db.collection<{ _id: string; collection: string }>('records').find({}, { projection: { collection: 1 } }).toArray();
  const store = new RecordStore(database.db, dataKeys);
  return new Map(await Promise.all(docs.map(async (d) => [d._id, (await store.get(d.collection, d._id))?.data] as const)));
}

async function assertAllReadable(database: TestDatabase, acked: Map<string, Data>): Promise<void> {
  const found = await readAll(database);
  const missing = [...acked.keys()].filter((id) => !found.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged records were lost`);
  for (const [id, data] of acked) assert.deepEqual(found.get(id), data);
  // And through the store, as the API reads them.
  const store = new RecordStore(database.db, dataKeys);
  for (const id of [...acked.keys()].filter((_, i) => i % 50 === 0)) assert.deepEqual((await store.get('notes', id))?.data, acked.get(id));
}

function writeFile(path: string, text: string, sync: boolean): void {
  const fd = openSync(path, 'w');
  writeSync(fd, text);
  if (sync) fsyncSync(fd);
  closeSync(fd);
}

function killHard(database: TestDatabase): Promise<[number | null, string | null]> {
  const pid = database.child.pid;
  assert.ok(pid, 'the database child has a pid');
  const exited = once(database.child, 'exited') as Promise<[number | null, string | null]>;
  process.kill(pid, 'SIGKILL');
  return exited;
}

describe('core database durability on FerretDB', function () {
  this.timeout(180_000);
  let disk: FlakeyDisk | undefined;
  let database: TestDatabase | undefined;
  let reopened: TestDatabase | undefined;
  let scratch: (TestDatabase & { cleanup: () => Promise<void> }) | undefined;

  afterEach(async () => {
    // Databases first: the disk unmounts only once nothing has files open on it.
    for (const db of [reopened, database]) await db?.stop();
    await scratch?.cleanup();
    await disk?.destroy();
    reopened = database = scratch = disk = undefined;
  });

  // A process kill leaves the page cache to the kernel, which writes it out anyway: it
  // passes with fsync off. Losing power does not. This is the test that fails if an
  // acknowledged write was not synced: with SQLite synchronous OFF the cut leaves a file
  // FerretDB cannot open; with the setup synced first, every acknowledged record is gone.
  for (const [mode, batch] of [['one insert at a time', 1], ['8 records per insertMany (group commit)', 8]] as const) {
    it(`keeps every record acknowledged before a power cut that comes while writes continue, ${mode}`, async () => {
      disk = await FlakeyDisk.create();
      const dataDir = join(disk.dir, 'core-data');
      database = await startTestDatabase(dataDir);
      const store = new RecordStore(database.db, dataKeys);
      await store.init();
      const writer = new Writer(store, 8, batch);
      await writer.until(400);

      // Controls on the same file system, from the same moment: a file synced before the cut
      // survives it, one only written (left in the page cache) does not.
      writeFile(join(disk.dir, 'synced'), 'synced before the cut', true);
      syncDir(disk.dir);
      writeFile(join(disk.dir, 'unsynced'), 'written before the cut, never synced', false);
      // The cut: from here the disk acknowledges writes and keeps none. Nothing runs between
      // taking the snapshot and dropping, so every record in it was acknowledged before.
      const beforeCut = new Map(writer.acked);
      disk.dropWrites();
      // FerretDB keeps acknowledging (its fsyncs "succeed"); the power goes while it does.
      await writer.until(beforeCut.size + 100);
      writer.halt();
      const [, signal] = await killHard(database);
      assert.equal(signal, 'SIGKILL');
      await database.child.stop(); // before its supervisor restarts it on the dead disk
      await database.stop();
      await writer.done();
      const afterCut = [...writer.acked.keys()].filter((id) => !beforeCut.has(id));

      const counts = await disk.powerCycle();
      assert.ok(counts.dropped > 0, `the disk dropped no writes (${JSON.stringify(counts)})`);
      assert.equal(readFileSync(join(disk.dir, 'synced'), 'utf8'), 'synced before the cut');
      const unsynced = join(disk.dir, 'unsynced');
      assert.ok(!existsSync(unsynced) || readFileSync(unsynced, 'utf8') !== 'written before the cut, never synced', 'a write never synced survived the cut: the disk kept unsynced data');

      // With writes acknowledged before they were synced, this is where it ends: FerretDB
      // finds no database it can open (SQLite synchronous OFF: "file is not a database").
      const log = memoryLogger();
      reopened = await startTestDatabase(dataDir, { log: log.log }).catch((err: Error) => {
        const lastError = log.lines.map((l) => String(l.message)).filter((m) => m.includes('"error"')).at(-1) ?? '';
        throw new Error(`FerretDB did not start on what the cut left of ${beforeCut.size} acknowledged records: ${err.message} ${lastError}`);
      });
      await assertAllReadable(reopened, beforeCut);
      // FerretDB acknowledged these after the cut and the disk threw them away: proof that
      // what survived did so because it was synced, not because nothing was lost.
      const found = await readAll(reopened);
      const lostAfterCut = afterCut.filter((id) => !found.has(id)).length;
      assert.ok(afterCut.length >= 100, `${afterCut.length} acknowledged after the cut`);
      assert.ok(lostAfterCut > 0, `all ${afterCut.length} records acknowledged after the cut survived: the cut dropped nothing`);
    });
  }

  it('keeps every acknowledged record when FerretDB is killed during writes and its supervisor restarts it', async () => {
    scratch = await startScratchDatabase();
    const store = new RecordStore(scratch.db, dataKeys);
    await store.init();
    const writer = new Writer(store, 8);
    await writer.until(300);

    const oldPid = scratch.child.pid;
    const restarted = once(scratch.child, 'started') as Promise<[number]>;
    writer.halt();
    const [, signal] = await killHard(scratch);
    assert.equal(signal, 'SIGKILL');
    await writer.done();
    const [newPid] = await restarted;
    assert.notEqual(newPid, oldPid);
    assert.equal(scratch.child.restarts, 1);

    // The same client reconnects (and logs in again) once the restarted server answers.
    await waitFor('the restarted database to answer', async () => (await scratch!.db.command({ ping: 1 })).ok === 1, 15_000, 200);
    // Inserts in flight at the kill may have been stored without their answer arriving.
    assert.ok((await scratch.db.collection('records').countDocuments({})) >= writer.acked.size);
    await assertAllReadable(scratch, writer.acked);
  });
});
