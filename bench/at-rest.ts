/**
 * What encryption at rest costs core (issue 14): the same records inserted and read on one
 * real FerretDB, once through RecordStore (content sealed under a per-record data key,
 * record-cipher.ts) and once the way the store wrote them before encryption (canonical JSON,
 * its SHA-256, the content as a plain document; read back as it is). Sequential, one
 * operation at a time, so the figures are per-operation latency and this process's CPU per
 * operation (where the cipher runs) next to FerretDB's (from /proc/<pid>/stat). Rounds
 * alternate which side goes first; each round's encrypted/plain ratio is reported, then the
 * median [min–max] over rounds. Small records (~150 B) and large ones (~64 KiB) separately.
 * The cipher alone (seal and open, no database) is timed too.
 *
 *   FERRETDB_BINARY=... node dist/bench/at-rest.js [rounds=7] [records=200]
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Collection } from 'mongodb';
import { canonicalJson } from '../services/common/json/canonical';
import { firstDataKeySet } from '../services/common/pki/data-key-file';
import { DataKeyRing } from '../services/core/storage/data-keys';
import { openRecord, sealRecord } from '../services/core/storage/record-cipher';
import { RecordStore, type NewRecord } from '../services/core/storage/records';
import { startScratchDatabase } from '../test/support/core-fixtures';

const CLK_TCK = 100;

type Side = 'encrypted' | 'plain';
type Size = 'small' | 'large';

interface Measure {
  insertMs: number;
  readMs: number;
  insertCpuUs: number;
  readCpuUs: number;
  dbCpuUsPerOp: number;
}

/** utime + stime of every thread of a process, in µs (clock-tick resolution). */
function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

function ownCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function spread(xs: number[], digits = 2): string {
  const r = (x: number): string => x.toFixed(digits);
  return `${r(median(xs))} [${r(Math.min(...xs))}–${r(Math.max(...xs))}]`;
}

function body(size: Size, i: number): Record<string, unknown> {
  if (size === 'small') return { title: `note ${i}`, amount: i * 7, tags: ['a', 'b'], customer: { name: 'Ada Lovelace', email: 'ada@example.invalid' } };
  return { title: `blob ${i}`, chunks: Array.from({ length: 4 }, (_, k) => `${k}`.padEnd(16_000, String.fromCharCode(97 + ((i + k) % 26)))) };
}

/** The store as it was before encryption: what "without encryption" means here. */
async function plainInsert(records: Collection, doc: NewRecord): Promise<void> {
  const bodySha256 = createHash('sha256').update(canonicalJson(doc.data), 'utf8').digest('hex');
  await records.insertOne({ _id: doc._id as never, collection: doc.collection, client: doc.client, tokenId: doc.tokenId, bodySha256, data: doc.data, createdAt: new Date() });
}

/** Read as RecordStore.get reads: by _id (FerretDB's primary key), the collection compared after. */
async function plainGet(records: Collection, collection: string, id: string): Promise<unknown> {
  const doc = await records.findOne({ _id: id as never });
  return doc?.collection === collection ? doc.data : undefined;
}

async function main(): Promise<void> {
  const [rounds = 7, n = 200] = process.argv.slice(2).map(Number);
  const database = await startScratchDatabase();
  try {
    const keys = DataKeyRing.of(firstDataKeySet());
    const store = new RecordStore(database.db, keys);
    await store.init();
    const plain = database.db.collection('records_plain');
    await plain.createIndex({ collection: 1, createdAt: 1 });
    const dbPid = database.child.pid!;
    const results: Record<Size, Record<Side, Measure[]>> = { small: { encrypted: [], plain: [] }, large: { encrypted: [], plain: [] } };

    const run = async (side: Side, size: Size): Promise<Measure> => {
      const docs: NewRecord[] = Array.from({ length: n }, (_, i) => ({ _id: randomUUID(), collection: 'notes', client: 'bench', tokenId: '0123456789abcdef', data: body(size, i) }));
      let cpu = ownCpuUs();
      let db = processCpuUs(dbPid);
      let t = performance.now();
      for (const d of docs) {
        if (side === 'encrypted') await store.insert(d);
        else await plainInsert(plain, d);
      }
      const insertMs = (performance.now() - t) / n;
      const insertCpuUs = (ownCpuUs() - cpu) / n;
      const dbInsert = processCpuUs(dbPid) - db;
      cpu = ownCpuUs();
      db = processCpuUs(dbPid);
      t = performance.now();
      for (const d of docs) {
        const data = side === 'encrypted' ? (await store.get('notes', d._id))?.data : await plainGet(plain, 'notes', d._id);
        if (data === undefined) throw new Error(`record ${d._id} not read back`);
      }
      const readMs = (performance.now() - t) / n;
      const readCpuUs = (ownCpuUs() - cpu) / n;
      const dbCpuUsPerOp = (dbInsert + processCpuUs(dbPid) - db) / (2 * n);
      // Every run starts from the same (empty) tables.
      await database.db.collection('records').deleteMany({});
      await plain.deleteMany({});
      return { insertMs, readMs, insertCpuUs, readCpuUs, dbCpuUsPerOp };
    };

    // Warm-up: connections, FerretDB's tables, JIT.
    for (const size of ['small', 'large'] as const) for (const side of ['encrypted', 'plain'] as const) await run(side, size);
    for (let r = 0; r < rounds; r++) {
      for (const size of ['small', 'large'] as const) {
        const order: Side[] = r % 2 === 0 ? ['encrypted', 'plain'] : ['plain', 'encrypted'];
        for (const side of order) {
          const m = await run(side, size);
          results[size][side].push(m);
          process.stdout.write(`${JSON.stringify({ round: r, size, side, ...Object.fromEntries(Object.entries(m).map(([k, v]: [string, number]) => [k, Number(v.toFixed(3))])), loadavg1: Number((loadavg()[0] ?? 0).toFixed(2)) })}\n`);
        }
      }
    }

    // The cipher alone, no database: µs per seal and per open.
    const cipher: Record<Size, { sealUs: number; openUs: number }> = { small: { sealUs: 0, openUs: 0 }, large: { sealUs: 0, openUs: 0 } };
    for (const size of ['small', 'large'] as const) {
      const text = canonicalJson(body(size, 1));
      const b = { id: randomUUID(), collection: 'notes' };
      const reps = size === 'small' ? 20_000 : 2_000;
      let t = performance.now();
      let sealed = sealRecord(keys, b, text);
      for (let i = 0; i < reps; i++) sealed = sealRecord(keys, b, text);
      cipher[size].sealUs = ((performance.now() - t) * 1000) / reps;
      t = performance.now();
      for (let i = 0; i < reps; i++) openRecord(keys, b, sealed);
      cipher[size].openUs = ((performance.now() - t) * 1000) / reps;
    }

    process.stdout.write('\nmedian [min–max] over rounds; ratio = encrypted / plain within each round\n');
    for (const size of ['small', 'large'] as const) {
      const e = results[size].encrypted;
      const p = results[size].plain;
      const ratio = (f: (m: Measure) => number): number[] => e.map((m, i) => f(m) / f(p[i]!));
      process.stdout.write(`\n${size} records (${Buffer.byteLength(canonicalJson(body(size, 1)))} B):\n`);
      process.stdout.write(`  insert ms/op   encrypted ${spread(e.map((m) => m.insertMs), 3)}  plain ${spread(p.map((m) => m.insertMs), 3)}  ratio ${spread(ratio((m) => m.insertMs))}\n`);
      process.stdout.write(`  read ms/op     encrypted ${spread(e.map((m) => m.readMs), 3)}  plain ${spread(p.map((m) => m.readMs), 3)}  ratio ${spread(ratio((m) => m.readMs))}\n`);
      process.stdout.write(`  core CPU µs per insert  encrypted ${spread(e.map((m) => m.insertCpuUs), 0)}  plain ${spread(p.map((m) => m.insertCpuUs), 0)}  ratio ${spread(ratio((m) => m.insertCpuUs))}\n`);
      process.stdout.write(`  core CPU µs per read    encrypted ${spread(e.map((m) => m.readCpuUs), 0)}  plain ${spread(p.map((m) => m.readCpuUs), 0)}  ratio ${spread(ratio((m) => m.readCpuUs))}\n`);
      process.stdout.write(`  FerretDB CPU µs per op  encrypted ${spread(e.map((m) => m.dbCpuUsPerOp), 0)}  plain ${spread(p.map((m) => m.dbCpuUsPerOp), 0)}  ratio ${spread(ratio((m) => m.dbCpuUsPerOp))}\n`);
      process.stdout.write(`  cipher alone: seal ${cipher[size].sealUs.toFixed(1)} µs, open ${cipher[size].openUs.toFixed(1)} µs\n`);
    }
    process.stdout.write(`\nload average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  } finally {
    await database.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
