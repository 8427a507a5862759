/**
 * The at-rest section's table, from its measurements (bench/at-rest.ts measures). Pure: the
 * unit tests in test/unit/bench/ cover it.
 */
import type { Row } from './report';
import { round, spread, spreadText } from './stats';

export const SIZES = ['small', 'large'] as const;
export type Size = (typeof SIZES)[number];

/** One run of one operation, averaged over its operations. */
export interface PerOp {
  ms: number;
  /** CPU of the process running RecordStore (core's place), µs per operation. */
  coreCpuUs: number;
  /** FerretDB's CPU, µs per operation. */
  dbCpuUs: number;
}

export interface StoreRun {
  insert: PerOp;
  read: PerOp;
}

/** Every array is one entry per round, in round order: each side ran once in every round. */
export interface AtRestMeasurements {
  recordsPerRun: number;
  /** Bytes of a record's content as canonical JSON. */
  bytes: Record<Size, number>;
  store: Record<Size, { encrypted: StoreRun; plain: StoreRun }[]>;
  /** The cipher alone, no database: µs per seal and per open. */
  cipher: Record<Size, { sealUs: number; openUs: number }[]>;
  erase: Record<Size, { erase: PerOp; deleteOne: PerOp }[]>;
  /** ms per page: RecordStore.list, and as many RecordStore.get of the same records. */
  list: { records: number; page: number; rounds: { list: number; byId: number }[] }[];
}

/** Median of per-round ratios a/b; NaN when no round has both (a tick-resolution CPU of 0, say). */
function ratios<T>(rounds: readonly T[], a: (r: T) => number, b: (r: T) => number): number[] {
  return rounds.map((r) => a(r) / b(r)).filter((x) => Number.isFinite(x) && x > 0);
}

/** `n`: the rounds run; a round without a figure on either side has no ratio. */
const ratioNote = (xs: readonly number[], n: number): string => `ratio per round ${spreadText(xs, 2)}× (median [min–max] over ${xs.length}${xs.length < n ? ` of ${n}` : ''} rounds)`;

const METRICS = [
  { metric: 'latency, ms per operation', of: (p: PerOp) => p.ms, digits: 2 },
  { metric: 'core CPU, µs per operation', of: (p: PerOp) => p.coreCpuUs, digits: 0 },
  { metric: 'FerretDB CPU, µs per operation', of: (p: PerOp) => p.dbCpuUs, digits: 0 },
] as const;

export function atRestRows(m: AtRestMeasurements): Row[] {
  const rows: Row[] = [];
  for (const size of SIZES) {
    const rounds = m.store[size];
    for (const op of ['insert', 'read'] as const) {
      for (const { metric, of, digits } of METRICS) {
        const rs = ratios(rounds, (r) => of(r.encrypted[op]), (r) => of(r.plain[op]));
        rows.push({
          scenario: `${op} one ${size} record (${m.bytes[size]} B of JSON), encrypted by RecordStore`,
          metric,
          value: spreadText(rounds.map((r) => of(r.encrypted[op])), digits),
          baseline: `before encryption: ${spreadText(rounds.map((r) => of(r.plain[op])), digits)}`,
          ratio: round(spread(rs).median, 2),
          note: `${ratioNote(rs, rounds.length)}; ${m.recordsPerRun} records a side in each round`,
        });
      }
    }
  }
  for (const size of SIZES) {
    const rounds = m.erase[size];
    const rs = ratios(rounds, (r) => r.erase.ms, (r) => r.deleteOne.ms);
    const cpu = (side: 'erase' | 'deleteOne'): string =>
      `core ${spreadText(rounds.map((r) => r[side].coreCpuUs), 0)} µs, FerretDB ${spreadText(rounds.map((r) => r[side].dbCpuUs), 0)} µs`;
    rows.push({
      scenario: `erase one ${size} record (${m.bytes[size]} B of JSON): RecordStore.erase, FerretDB with secure_delete, then the WAL purge`,
      metric: 'latency, ms per operation',
      value: spreadText(rounds.map((r) => r.erase.ms), 2),
      baseline: `deleteOne, no secure_delete, no purge: ${spreadText(rounds.map((r) => r.deleteOne.ms), 2)}`,
      ratio: round(spread(rs).median, 2),
      note: `${ratioNote(rs, rounds.length)}; ${m.recordsPerRun} records a side in each round; CPU per operation: erase ${cpu('erase')}; deleteOne ${cpu('deleteOne')}`,
    });
  }
  for (const l of m.list) {
    const rs = ratios(l.rounds, (r) => r.list, (r) => r.byId);
    rows.push({
      scenario: `a page of ${l.page} from a collection of ${l.records} records: RecordStore.list`,
      metric: 'latency, ms per page',
      value: spreadText(l.rounds.map((r) => r.list), 1),
      baseline: `the same ${l.page} records read by id: ${spreadText(l.rounds.map((r) => r.byId), 1)}`,
      ratio: round(spread(rs).median, 2),
      note: ratioNote(rs, l.rounds.length),
    });
  }
  return rows;
}

/**
 * How listing grows with the table, in words: for each page size, the median time at the
 * largest collection over the one at the smallest, beside the growth of the table and of
 * reading the same records by id. Undefined with a single collection size.
 */
export function listScaling(list: AtRestMeasurements['list']): string | undefined {
  const sizes = [...new Set(list.map((l) => l.records))].sort((a, b) => a - b);
  if (sizes.length < 2) return undefined;
  const lo = sizes[0]!;
  const hi = sizes[sizes.length - 1]!;
  const med = (records: number, page: number, f: (r: { list: number; byId: number }) => number): number => spread(list.find((l) => l.records === records && l.page === page)?.rounds.map(f) ?? []).median;
  const pages = [...new Set(list.map((l) => l.page))].sort((a, b) => a - b);
  const parts = pages.map((page) => {
    const a = med(lo, page, (r) => r.list);
    const b = med(hi, page, (r) => r.list);
    const byId = med(hi, page, (r) => r.byId) / med(lo, page, (r) => r.byId);
    return `a page of ${page} took ${round(b / a, 1)}× as long (${round(a, 1)} → ${round(b, 1)} ms; the same records by id ${round(byId, 1)}×)`;
  });
  return (
    `FerretDB v1 (SQLite) filters and sorts a list query in memory after reading every record of the table, so a page costs more as the table grows. ` +
    `From ${lo} to ${hi} records (${round(hi / lo, 1)}×), ${parts.join('; ')}.`
  );
}

/** The prose under the table: what each side is, the cipher alone, how listing scales, the settings. */
export function atRestNotes(m: AtRestMeasurements, run: { version: string; settings: Record<string, string | number>; busyRetries: number; discarded: readonly string[] }): string[] {
  const cipher = SIZES.map((s) => `${s} records: seal ${spreadText(m.cipher[s].map((x) => x.sealUs), 1)} µs, open ${spreadText(m.cipher[s].map((x) => x.openUs), 1)} µs`).join('; ');
  const scaling = listScaling(m.list);
  return [
    `Every operation runs alone, one after another, from this process (which runs RecordStore, as core does) to FerretDB ${run.version} (SQLite, synchronous=FULL) on this host, not in a container. ` +
      '"Before encryption" is the store as it was: the content in clear with its SHA-256, on the same FerretDB. ' +
      'Erase is RecordStore.erase as core runs it: the record found by id, deleted on a FerretDB with secure_delete=ON (its bytes overwritten), then the write-ahead log checkpointed and truncated (db/sqlite-wal-purge.ts); ' +
      'its baseline, the store before erase existed, is a deleteOne by id on a second FerretDB started without secure_delete and given no purge. Both tables hold only the records being erased, their logs emptied first. ' +
      'CPU per operation is this process\'s (µs from the kernel) and FerretDB\'s (the kernel\'s run time of its threads). Sides alternate which goes first; list operations rotate; each list figure is the mean of 3 in a round.',
    `The cipher alone (no database), median [min–max] over rounds: ${cipher}.`,
    ...(scaling ? [scaling] : []),
    `Settings: ${Object.entries(run.settings).map(([k, v]) => `${k}=${v}`).join(', ')}. Rounds discarded as busy and run again (at most ${run.busyRetries}): ${run.discarded.length === 0 ? 'none' : run.discarded.join('; ')}.`,
  ];
}
