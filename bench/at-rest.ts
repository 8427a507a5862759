/**
 * The at-rest section (issue 14): what encrypting records, erasing them for good and listing
 * them cost core, on real FerretDB processes run from FERRETDB_BINARY (no Docker), one
 * operation at a time, so the figures are per-operation latency and CPU: this process's (it
 * runs RecordStore, as core does) and FerretDB's (/proc/<pid>/stat).
 *
 * - Insert and read: RecordStore (content sealed under a per-record data key,
 *   record-cipher.ts) against the store as it was before encryption (canonical JSON, its
 *   SHA-256 and the content as a plain document; read back as it is), on the same FerretDB.
 *   Small records (~150 B) and large ones (~64 KiB). The cipher alone is timed too.
 * - Erase: RecordStore.erase as core runs it (FerretDB with secure_delete=ON, then the WAL
 *   purge, db/sqlite-wal-purge.ts) against a plain deleteOne on a second FerretDB started
 *   without secure_delete and given no purge: the store before erase was built.
 * - List: a page of LIST_LIMIT_DEFAULT and of LIST_LIMIT_MAX through RecordStore.list against
 *   reading the same records by id, at each collection size of BENCH_AT_REST_LIST_SIZES.
 *
 * Sides take turns within a round (the order alternates, or rotates for the four list
 * operations), ratios are taken round by round. Every round is a host window checked like
 * the chain section's: here nothing of ours runs in a container, so every container, the
 * Docker engine included, is other work.
 */
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Collection, Db, MongoClient } from 'mongodb';
import { canonicalJson } from '../services/common/json/canonical';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../services/common/http/list-query';
import { ChildSupervisor } from '../services/common/lifecycle/supervisor';
import { firstDataKeySet } from '../services/common/pki/data-key-file';
import { connectClient, ensureDbPassword } from '../services/core/db/database';
import { DB_NAME, engineCommand, ferretdbSqliteFile } from '../services/core/db/engine';
import { SqliteWalPurge } from '../services/core/db/sqlite-wal-purge';
import { DataKeyRing } from '../services/core/storage/data-keys';
import { openRecord, sealRecord } from '../services/core/storage/record-cipher';
import { RecordStore, type NewRecord } from '../services/core/storage/records';
import { ferretdbBinary, startScratchDatabase, testDbConfig } from '../test/support/core-fixtures';
import { silentLogger } from '../test/support/logger';
import { docker } from '../test/support/stack/docker';
import { tempDir } from '../test/support/tmp';
import { atRestNotes, atRestRows, SIZES, type AtRestMeasurements, type PerOp, type Size, type StoreRun } from './at-rest-rows';
import { busyThresholds, MIN_REPORTED_ROUNDS, quietWait, type BenchConfig } from './config';
import { busyReasons, HostBusyError, HostMeter, hostWindow, quietCheck } from './host';
import type { SectionResult } from './report';
import { roundOrder } from './stats';

const COLLECTION = 'notes';
/** Records per insertMany while filling a table outside the measured windows. */
const FILL_BATCH = 500;
/** Each list operation runs this many times in a round; the round's figure is their mean. */
const LIST_REPEATS = 3;

/** ~150 B (small) or ~64 KiB (large) of canonical JSON. */
function body(size: Size, i: number): Record<string, unknown> {
  if (size === 'small') return { title: `note ${i}`, amount: i * 7, tags: ['a', 'b'], customer: { name: 'Ada Lovelace', email: 'ada@example.invalid', phone: '+44 20 7946 0000' }, done: false };
  return { title: `blob ${i}`, chunks: Array.from({ length: 4 }, (_, k) => `${k}`.padEnd(16_000, String.fromCharCode(97 + ((i + k) % 26)))) };
}

const newRecords = (size: Size, n: number): NewRecord[] => Array.from({ length: n }, (_, i) => ({ _id: randomUUID(), collection: COLLECTION, client: 'bench', tokenId: '0123456789abcdef', data: body(size, i) }));

/** The store as it was before encryption: what "without encryption" means here. */
async function plainInsert(records: Collection, doc: NewRecord): Promise<void> {
  const bodySha256 = createHash('sha256').update(canonicalJson(doc.data), 'utf8').digest('hex');
  await records.insertOne({ _id: doc._id as never, collection: doc.collection, client: doc.client, tokenId: doc.tokenId, bodySha256, data: doc.data, createdAt: new Date() });
}

/** Read as RecordStore.get reads: by _id (FerretDB's primary key), the collection compared after. */
async function plainGet(records: Collection, id: string): Promise<unknown> {
  const doc = await records.findOne({ _id: id as never });
  return doc?.collection === COLLECTION ? doc.data : undefined;
}

const ownCpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/**
 * A process's CPU so far, µs: the kernel's run time of each of its threads (schedstat, in ns,
 * where /proc/<pid>/stat counts 10 ms ticks, too coarse for a run of a hundred operations).
 * A thread that ends within a run takes its time with it; FerretDB's Go runtime keeps its threads.
 */
function processCpuUs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1000;
}

/** Runs `ops` one after another and returns the per-operation time, this process's CPU and FerretDB's. */
async function perOp(dbPid: number, n: number, ops: () => Promise<void>): Promise<PerOp> {
  const cpu = ownCpuUs();
  const db = processCpuUs(dbPid);
  const t = performance.now();
  await ops();
  return { ms: (performance.now() - t) / n, coreCpuUs: (ownCpuUs() - cpu) / n, dbCpuUs: (processCpuUs(dbPid) - db) / n };
}

interface Ferret {
  db: Db;
  pid: number;
  sqliteFile: string;
  cleanup: () => Promise<void>;
}

/** The FerretDB core runs (db/engine.ts: synchronous=FULL, secure_delete=ON). */
async function coreFerretDb(): Promise<Ferret> {
  const d = await startScratchDatabase();
  const pid = d.child.pid;
  if (pid === undefined) throw new Error('FerretDB has no pid');
  return { db: d.db, pid, sqliteFile: ferretdbSqliteFile(d.cfg), cleanup: d.cleanup };
}

/**
 * A FerretDB as core ran it before erase existed: the same command (db/engine.ts) without
 * secure_delete=ON, so a delete leaves the record's bytes in the freed space.
 */
async function plainFerretDb(): Promise<Ferret> {
  const tmp = tempDir('nonstop-bench-plain-db-');
  let child: ChildSupervisor | undefined;
  let client: MongoClient | undefined;
  const cleanup = async (): Promise<void> => {
    await client?.close().catch(() => undefined);
    await child?.stop();
    tmp.cleanup();
  };
  try {
    const cfg = await testDbConfig(tmp.dir);
    const password = ensureDbPassword(cfg);
    const cmd = engineCommand(cfg, password);
    const secureDelete = '&_pragma=secure_delete(ON)';
    const url = cmd.args.findIndex((a) => a.startsWith('--sqlite-url=') && a.includes(secureDelete));
    // Core's command must have it, or this baseline would be core's own configuration.
    if (url < 0) throw new Error(`core's FerretDB command has no ${secureDelete} to leave out: ${cmd.args.join(' ')}`);
    const args = cmd.args.map((a, i) => (i === url ? a.replace(secureDelete, '') : a));
    for (const dir of cmd.dirs) mkdirSync(dir, { recursive: true, mode: 0o700 });
    child = new ChildSupervisor({ name: 'ferretdb-plain', command: cmd.command, args, env: cmd.env, stopSignal: 'SIGTERM', stopTimeoutMs: 15_000 }, silentLogger());
    child.start();
    const deadline = Date.now() + cfg.startTimeoutMs;
    for (;;) {
      client = connectClient(cfg, password);
      try {
        await client.db(DB_NAME).command({ ping: 1 });
        break;
      } catch (err) {
        await client.close().catch(() => undefined);
        client = undefined;
        if (Date.now() > deadline) throw new Error(`FerretDB without secure_delete did not answer within ${cfg.startTimeoutMs} ms`, { cause: err });
        await sleep(200);
      }
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error('FerretDB has no pid');
    return { db: client.db(DB_NAME), pid, sqliteFile: ferretdbSqliteFile(cfg), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Fills the records table to `n` records outside any measured window, in batches. */
async function fill(store: RecordStore, size: Size, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < n; done += FILL_BATCH) {
    const batch = newRecords(size, Math.min(FILL_BATCH, n - done));
    const outcomes = await store.insertMany(batch);
    const failed = outcomes.find((o) => o !== true);
    if (failed !== undefined) throw new Error(`filling the table: ${String(failed)}`);
    ids.push(...batch.map((d) => d._id));
  }
  return ids;
}

export async function atRestBench(c: BenchConfig): Promise<SectionResult> {
  const rounds = c.BENCH_AT_REST_ROUNDS;
  const n = c.BENCH_AT_REST_RECORDS;
  const listSizes = [...new Set(c.BENCH_AT_REST_LIST_SIZES)].sort((a, b) => a - b);
  const unreported: string[] = [];
  if (rounds < MIN_REPORTED_ROUNDS) unreported.push(`${rounds} rounds per side (at least ${MIN_REPORTED_ROUNDS} are published)`);
  const thresholds = busyThresholds(c);
  const meter = await HostMeter.create(docker(), {});
  const version = execFileSync(ferretdbBinary(), ['--version'], { encoding: 'utf8' }).split('\n')[0]?.replace(/^version:\s*/, '') ?? 'unknown';

  let retriesLeft = c.BENCH_BUSY_RETRIES;
  const discarded: string[] = [];
  const keptBusy: string[] = [];
  /** `rounds` rounds of `run`; a round whose window saw a busy host is run again, as in the chain section. */
  const inRounds = async <T>(phase: string, run: (round: number) => Promise<T>): Promise<T[]> => {
    const out: T[] = [];
    for (let r = 0; r < rounds; ) {
      const a = meter.snapshot();
      const got = await run(r);
      const w = hostWindow(a, meter.snapshot());
      // Nothing of this section runs in a container: every container and the engine are other work.
      const busy = busyReasons(w, thresholds, { engineIsOther: true });
      process.stdout.write(`  ${phase}, round ${r + 1} (${w.seconds.toFixed(1)} s)${busy.length > 0 ? ` — host busy: ${busy.join('; ')}` : ''}\n`);
      if (busy.length > 0 && !c.BENCH_ALLOW_BUSY) {
        if (retriesLeft === 0) throw new HostBusyError(`during ${phase}, round ${r + 1} (${c.BENCH_BUSY_RETRIES} busy rounds already run again)`, busy);
        retriesLeft--;
        discarded.push(`${phase} round ${r + 1} (${busy.join('; ')})`);
        const quiet = await quietCheck(meter, thresholds, c.BENCH_QUIET_SECONDS, quietWait(c), { engineIsOther: true });
        if (quiet.reasons.length > 0) throw new HostBusyError(`after a busy round of ${phase}`, quiet.reasons);
        continue;
      }
      if (busy.length > 0) keptBusy.push(`${phase} round ${r + 1}`);
      out.push(got);
      r++;
    }
    return out;
  };
  /** Alternating: round 0 runs `a` first, round 1 `b` first, and so on. */
  const alternate = async <A, B>(r: number, a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> => {
    if (r % 2 === 0) {
      const x = await a();
      return [x, await b()];
    }
    const y = await b();
    return [await a(), y];
  };

  const keys = DataKeyRing.of(firstDataKeySet());
  const core = await coreFerretDb();
  let plainDb: Ferret | undefined;
  try {
    plainDb = await plainFerretDb();
    const purge = new SqliteWalPurge(core.sqliteFile, silentLogger());
    const store = new RecordStore(core.db, keys, purge);
    await store.init();
    const records = core.db.collection('records');
    const plain = core.db.collection('records_plain');
    await plain.createIndex({ collection: 1, createdAt: 1 });
    const beforeErase = new RecordStore(plainDb.db, keys);
    await beforeErase.init();
    const plainRecords = plainDb.db.collection('records');
    const plainPurge = new SqliteWalPurge(plainDb.sqliteFile, silentLogger());

    // Insert and read: every run starts from the same (empty) tables.
    const storeRun = async (side: 'encrypted' | 'plain', size: Size, count: number): Promise<StoreRun> => {
      const docs = newRecords(size, count);
      const insert = await perOp(core.pid, count, async () => {
        for (const d of docs) {
          if (side === 'encrypted') await store.insert(d);
          else await plainInsert(plain, d);
        }
      });
      const read = await perOp(core.pid, count, async () => {
        for (const d of docs) {
          const data = side === 'encrypted' ? (await store.get(COLLECTION, d._id))?.data : await plainGet(plain, d._id);
          if (data === undefined) throw new Error(`record ${d._id} not read back`);
        }
      });
      await records.deleteMany({});
      await plain.deleteMany({});
      return { insert, read };
    };
    // Warm-up: connections, FerretDB's tables, the JIT.
    for (const size of SIZES) for (const side of ['encrypted', 'plain'] as const) await storeRun(side, size, Math.min(n, 20));
    const storeRounds = await inRounds('insert and read', async (r) => {
      const out = {} as Record<Size, { encrypted: StoreRun; plain: StoreRun }>;
      for (const size of SIZES) {
        const [encrypted, plainRun] = await alternate(
          r,
          () => storeRun('encrypted', size, n),
          () => storeRun('plain', size, n),
        );
        out[size] = { encrypted, plain: plainRun };
      }
      return out;
    });

    // The cipher alone, no database.
    const cipherRun = (size: Size): { sealUs: number; openUs: number } => {
      const text = canonicalJson(body(size, 1));
      const binding = { id: randomUUID(), collection: COLLECTION };
      const reps = size === 'small' ? 5_000 : 500;
      let t = performance.now();
      let sealed = sealRecord(keys, binding, text);
      for (let i = 0; i < reps; i++) sealed = sealRecord(keys, binding, text);
      const sealUs = ((performance.now() - t) * 1000) / reps;
      t = performance.now();
      for (let i = 0; i < reps; i++) openRecord(keys, binding, sealed);
      return { sealUs, openUs: ((performance.now() - t) * 1000) / reps };
    };
    cipherRun('small');
    const cipherRounds = await inRounds('cipher alone', () => Promise.resolve(Object.fromEntries(SIZES.map((s) => [s, cipherRun(s)])) as Record<Size, { sealUs: number; openUs: number }>));

    // Erase: the same records stored on both FerretDBs, their WALs emptied, then erased one by one.
    const eraseRun = async (size: Size, count: number, r: number): Promise<{ erase: PerOp; deleteOne: PerOp }> => {
      const ids = await fill(store, size, count);
      const plainIds = await fill(beforeErase, size, count);
      // So that each erase pays for its own purge, not for the frames the inserts left.
      await purge.purge();
      await plainPurge.purge();
      const [erase, deleteOne] = await alternate(
        r,
        () =>
          perOp(core.pid, count, async () => {
            for (const id of ids) if (!(await store.erase(COLLECTION, id))) throw new Error(`record ${id} was not erased`);
          }),
        () =>
          perOp(plainDb!.pid, count, async () => {
            for (const id of plainIds) if ((await plainRecords.deleteOne({ _id: id as never })).deletedCount !== 1) throw new Error(`record ${id} was not deleted`);
          }),
      );
      const left = (await records.countDocuments({})) + (await plainRecords.countDocuments({}));
      if (left !== 0) throw new Error(`${left} records left after erasing every one`);
      return { erase, deleteOne };
    };
    for (const size of SIZES) await eraseRun(size, Math.min(n, 20), 0);
    const eraseRounds = await inRounds('erase', async (r) => {
      const out = {} as Record<Size, { erase: PerOp; deleteOne: PerOp }>;
      for (const size of SIZES) out[size] = await eraseRun(size, n, r);
      return out;
    });

    // List: the table grown to each size in turn; a page from its start, and the same records by id.
    const list: AtRestMeasurements['list'] = [];
    let stored = 0;
    for (const size of listSizes) {
      await fill(store, 'small', size - stored);
      stored = size;
      const first = await store.list(COLLECTION, { limit: LIST_LIMIT_MAX });
      if (first.records.length !== Math.min(LIST_LIMIT_MAX, size)) throw new Error(`a page of ${LIST_LIMIT_MAX} from ${size} records held ${first.records.length}`);
      const pages = [LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX].filter((p) => p <= size);
      const ops = pages.flatMap((page) => {
        const ids = first.records.slice(0, page).map((r) => r.id);
        const timed = async (f: () => Promise<void>): Promise<number> => {
          const t = performance.now();
          for (let i = 0; i < LIST_REPEATS; i++) await f();
          return (performance.now() - t) / LIST_REPEATS;
        };
        return [
          {
            page,
            kind: 'list' as const,
            run: () =>
              timed(async () => {
                const got = await store.list(COLLECTION, { limit: page });
                if (got.records.length !== page) throw new Error(`a page of ${page} held ${got.records.length}`);
              }),
          },
          {
            page,
            kind: 'byId' as const,
            run: () =>
              timed(async () => {
                for (const id of ids) if ((await store.get(COLLECTION, id)) === undefined) throw new Error(`record ${id} not read back`);
              }),
          },
        ];
      });
      for (const op of ops) await op.run();
      const got = await inRounds(`list at ${size} records`, async (r) => {
        const ms = new Map<string, number>();
        for (const i of roundOrder(ops.length, r)) ms.set(`${ops[i]!.kind} ${ops[i]!.page}`, await ops[i]!.run());
        return ms;
      });
      for (const page of pages) list.push({ records: size, page, rounds: got.map((m) => ({ list: m.get(`list ${page}`)!, byId: m.get(`byId ${page}`)! })) });
    }

    const m: AtRestMeasurements = {
      recordsPerRun: n,
      bytes: Object.fromEntries(SIZES.map((s) => [s, Buffer.byteLength(canonicalJson(body(s, 1)))])) as Record<Size, number>,
      store: Object.fromEntries(SIZES.map((s) => [s, storeRounds.map((r) => r[s])])) as AtRestMeasurements['store'],
      cipher: Object.fromEntries(SIZES.map((s) => [s, cipherRounds.map((r) => r[s])])) as AtRestMeasurements['cipher'],
      erase: Object.fromEntries(SIZES.map((s) => [s, eraseRounds.map((r) => r[s])])) as AtRestMeasurements['erase'],
      list,
    };
    if (keptBusy.length > 0) unreported.push(`host busy in ${keptBusy.join(', ')}`);
    return { rows: atRestRows(m), notes: atRestNotes(m, { version, settings: { BENCH_AT_REST_ROUNDS: rounds, BENCH_AT_REST_RECORDS: n, BENCH_AT_REST_LIST_SIZES: listSizes.join(',') }, busyRetries: c.BENCH_BUSY_RETRIES, discarded }), unreported };
  } finally {
    await plainDb?.cleanup();
    await core.cleanup();
  }
}
