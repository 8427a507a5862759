import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandStartedEvent, ConnectionClosedEvent, ConnectionReadyEvent, MongoClient } from 'mongodb';
import { ApiError } from '../../../../services/common/errors/api-error';
import { storedFor } from '../../../../services/common/errors/codes';
import { connectClient, ensureDbPassword } from '../../../../services/core/db/database';
import { DB_NAME } from '../../../../services/core/db/engine';
import { Deadline } from '../../../../services/core/storage/deadline';
import { RecordStore, type NewRecord } from '../../../../services/core/storage/records';
import { startScratchDatabase, startTestDatabase, type TestDatabase, testDataKeys } from '../../../support/core-fixtures';
import { stopProcess } from '../../../support/process-stop';
import { waitFor } from '../../../support/wait';

/** One key file for the whole file: records written before a restart are read after it. */
const dataKeys = testDataKeys();

type ScratchDatabase = TestDatabase & { dataDir: string; cleanup: () => Promise<void> };

/**
 * A RecordStore on a client of its own (core's options) whose driver events the test
 * watches: which connections are open, and which inserts were written to one (the driver
 * announces a command just before writing it to the socket).
 */
class WatchedStore {
  readonly client: MongoClient;
  readonly store: RecordStore;
  readonly sent = new Set<string>();
  readonly open = new Set<number>();

  constructor(database: TestDatabase) {
    this.client = connectClient(database.cfg, ensureDbPassword(database.cfg), { monitorCommands: true });
    this.client.on('commandStarted', (ev: CommandStartedEvent) => {
      if (ev.commandName !== 'insert') return;
      for (const doc of ev.command.documents as { _id: string }[]) this.sent.add(doc._id);
    });
    this.client.on('connectionReady', (ev: ConnectionReadyEvent) => this.open.add(ev.connectionId as number));
    this.client.on('connectionClosed', (ev: ConnectionClosedEvent) => this.open.delete(ev.connectionId as number));
    this.store = new RecordStore(this.client.db(DB_NAME), dataKeys);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

function newRecord(data: Record<string, unknown> = { title: 'failure' }): NewRecord {
  return { _id: randomUUID(), collection: 'notes', client: 'app-1', tokenId: '0123456789abcdef', data };
}

/** Inserts with a deadline of `budgetMs`, disposing it after. */
async function insertWithin(store: RecordStore, doc: NewRecord, budgetMs: number): Promise<boolean> {
  const deadline = new Deadline(budgetMs);
  try {
    return await store.insert(doc, { deadline });
  } finally {
    deadline.dispose();
  }
}

function apiErrorOf(result: PromiseSettledResult<unknown>): ApiError {
  assert.equal(result.status, 'rejected', 'the insert succeeded');
  const err = result.reason as unknown;
  assert.ok(err instanceof ApiError, `not an ApiError: ${String(err)}`);
  return err;
}

function pidOf(database: TestDatabase): number {
  const pid = database.child.pid;
  assert.ok(pid !== undefined && database.child.running, 'FerretDB is not running');
  return pid;
}

describe('core RecordStore deadlines and storage failures on FerretDB', function () {
  this.timeout(90_000);
  let database: ScratchDatabase | undefined;
  let watched: WatchedStore | undefined;
  let stoppedPid: number | undefined;
  let killed = false;

  async function setUp(): Promise<{ database: ScratchDatabase; watched: WatchedStore }> {
    database = await startScratchDatabase();
    watched = new WatchedStore(database);
    await watched.store.init();
    // Positive control: this client stores, and the pool has an open connection.
    const warm = newRecord();
    assert.equal(await insertWithin(watched.store, warm, 10_000), true);
    assert.equal(await database.db.collection('records').countDocuments({ _id: warm._id as never }), 1);
    return { database, watched };
  }

  async function stall(db: TestDatabase): Promise<void> {
    stoppedPid = pidOf(db);
    await stopProcess(stoppedPid);
  }

  function resume(): void {
    if (stoppedPid === undefined) return;
    try {
      process.kill(stoppedPid, 'SIGCONT');
    } catch {
      // Already gone (the test killed it).
    }
    stoppedPid = undefined;
  }

  afterEach(async () => {
    resume();
    // After a SIGKILL the supervisor restarts the engine; stopping it mid-spawn could leave
    // the new process running, so let it come up first.
    if (killed && database) await waitFor('the supervisor to restart FerretDB', () => database?.child.running, 20_000).catch(() => undefined);
    killed = false;
    await watched?.close();
    await database?.cleanup();
    watched = undefined;
    database = undefined;
  });

  it('drops inserts still waiting for a connection when their deadline passes: none of them is sent or stored after the database resumes', async () => {
    const { database: db, watched: w } = await setUp();
    // More than the pool's 64 connections, so most wait in the driver's queue.
    const docs = Array.from({ length: 150 }, () => newRecord());
    const openAtStall = w.open.size;
    await stall(db);
    const results = await Promise.allSettled(docs.map((doc) => insertWithin(w.store, doc, 400)));
    assert.notEqual(stoppedPid, undefined, 'answered only after the database resumed');
    for (const r of results) assert.equal(apiErrorOf(r).code, 'deadline_exceeded');
    const ids = docs.map((d) => d._id);
    const sentBeforeDeadline = ids.filter((id) => w.sent.has(id));
    // Only a connection already open when the database stalled could carry an insert.
    assert.ok(sentBeforeDeadline.length <= openAtStall, `${sentBeforeDeadline.length} sent on ${openAtStall} open connections`);

    resume();
    await waitFor('a fresh insert after the database resumed', () => insertWithin(w.store, newRecord(), 5000).catch(() => false));
    // Anything the driver still held would be sent around now; give it time to commit.
    await sleep(1000);
    const sentLater = ids.filter((id) => w.sent.has(id) && !sentBeforeDeadline.includes(id));
    assert.deepEqual(sentLater, [], 'inserts were sent after their deadline');
    const stored = (await db.db.collection('records').find({ _id: { $in: ids as never[] } }, { projection: { _id: 1 } }).toArray()).map((d) => d._id as unknown as string);
    for (const id of stored) assert.ok(sentBeforeDeadline.includes(id), `${id} was stored without having been sent before its deadline`);
    assert.ok(ids.length - stored.length >= ids.length - openAtStall);
    process.stdout.write(`      ${ids.length} inserts behind a stalled database: ${sentBeforeDeadline.length} written to one of ${openAtStall} open connections before the deadline (${stored.length} of those committed on resuming), the rest never sent\n`);
  });

  it('answers 503 unavailable, stored no, when the database is down, and the record is indeed absent once it is back', async () => {
    const { database: db, watched: w } = await setUp();
    await db.child.stop();
    const doc = newRecord({ title: 'while down' });
    const [result] = await Promise.allSettled([insertWithin(w.store, doc, 30_000)]);
    const err = apiErrorOf(result);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'unavailable');
    assert.equal(storedFor(err.code), 'no');

    const again = await startTestDatabase(db.dataDir, { port: db.cfg.port });
    try {
      assert.equal(await again.db.collection('records').countDocuments({ _id: doc._id as never }), 0);
      // Positive control: the same insert, now that the database is back, stores once.
      await waitFor('the insert to succeed against the restarted database', () => insertWithin(w.store, doc, 5000).catch(() => false));
      assert.equal(await again.db.collection('records').countDocuments({ _id: doc._id as never }), 1);
    } finally {
      await again.stop();
    }
  });

  it('answers 502 outcome_unknown when the connection fails after the insert was written to it', async () => {
    const { database: db, watched: w } = await setUp();
    const doc = newRecord({ title: 'cut after send' });
    await stall(db);
    const pending = Promise.allSettled([insertWithin(w.store, doc, 30_000)]);
    await waitFor('the insert to be written to a connection', () => w.sent.has(doc._id), 10_000, 10);
    // Killing the stalled engine closes its sockets under the command it holds unread.
    process.kill(pidOf(db), 'SIGKILL');
    killed = true;
    stoppedPid = undefined;
    const err = apiErrorOf((await pending)[0]);
    assert.equal(err.status, 502);
    assert.equal(err.code, 'outcome_unknown');
    assert.equal(storedFor(err.code), 'unknown');

    // The supervisor restarts the engine on the same data.
    await waitFor('a fresh insert after the database restarted', () => insertWithin(w.store, newRecord(), 5000).catch(() => false), 30_000);
    // Here the engine died before reading the command, so it was in fact not stored: core
    // could not know that, and said unknown rather than guessing either way.
    assert.equal(await w.client.db(DB_NAME).collection('records').countDocuments({ _id: doc._id as never }), 0);
  });
});
