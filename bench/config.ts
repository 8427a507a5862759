import { env, intItem, parseEnv, type EnvOf } from '../services/common/config/env';
import type { BusyThresholds } from './host';

/**
 * Every setting of `npm run bench`, declared once and checked at start (a bad value names
 * the variable and stops the run before anything is built). The defaults are the ones a
 * published BENCHMARKS.md is made with; `MIN_REPORTED_ROUNDS` says what may be lowered for
 * a quick look without the figures being published.
 */
const SHAPE = {
  /** knock: knocks per side. */
  BENCH_ROUNDS: env.int({ min: 1, max: 1000, def: 20 }),
  /** footprint: seconds of load while memory is sampled. */
  BENCH_SECONDS: env.int({ min: 1, max: 600, def: 12 }),
  BENCH_RECOVERY_ROUNDS: env.int({ min: 1, max: 50, def: 3 }),
  /** at-rest: rounds; encrypted and plain (erase and deleteOne, list and by id) take turns within each. */
  BENCH_AT_REST_ROUNDS: env.int({ min: 1, max: 100, def: 5 }),
  /** at-rest: records each side inserts, reads and erases in a round, per record size. */
  BENCH_AT_REST_RECORDS: env.int({ min: 10, max: 10_000, def: 100 }),
  /** at-rest: collection sizes a page is listed from (the table is grown to each in turn). */
  BENCH_AT_REST_LIST_SIZES: env.list(intItem(100, 100_000), { def: '1000,5000', min: 1, max: 4, expected: 'record counts from 100 to 100000, comma-separated' }),
  /** chain: rounds per path and scenario; paths take turns within a round, in a rotating order. */
  BENCH_CHAIN_ROUNDS: env.int({ min: 1, max: 100, def: 5 }),
  /** chain: measured seconds of each closed-loop run (throughput). */
  BENCH_CHAIN_SECONDS: env.int({ min: 1, max: 600, def: 6 }),
  /** chain: measured seconds of each open-loop run (latency at a fixed rate). */
  BENCH_LATENCY_SECONDS: env.int({ min: 1, max: 600, def: 10 }),
  /** chain: load before each window, discarded. */
  BENCH_WARMUP_SECONDS: env.int({ min: 1, max: 60, def: 1 }),
  BENCH_CONCURRENCY: env.int({ min: 1, max: 1024, def: 32 }),
  /**
   * chain: the client's per-request timeout; a failed request counts as a latency sample of
   * this long. Above the gateway's own 10 s request deadline, so the chain's 504 arrives first.
   */
  BENCH_TIMEOUT_MS: env.int({ min: 100, max: 120_000, def: 15_000 }),
  /** curves: rounds per point (each side of a point runs once a round). */
  BENCH_CURVES_ROUNDS: env.int({ min: 1, max: 50, def: 3 }),
  /** curves: measured seconds of each closed-loop run. */
  BENCH_CURVES_SECONDS: env.int({ min: 1, max: 600, def: 3 }),
  /** curves: connections of the connections curve (chain and straight to core, GET and POST). */
  BENCH_CURVES_CONNECTIONS: env.list(intItem(1, 1024), { def: '1,4,16,64,256', min: 1, max: 12, expected: 'connection counts from 1 to 1024, comma-separated' }),
  /** curves: POST body sizes of the body curve, bytes (the chain's default MAX_BODY_BYTES is 1 MiB). */
  BENCH_CURVES_BODY_BYTES: env.list(intItem(64, 1_048_576), { def: '1024,20480,1048576', min: 1, max: 8, expected: 'byte counts from 64 to 1048576, comma-separated' }),
  /**
   * curves: connections of the body curve. Four 1 MiB bodies are half the gateway's default
   * MAX_PENDING_BYTES (8 MiB), so the largest point is not refused by admission control.
   */
  BENCH_CURVES_BODY_CONNECTIONS: env.int({ min: 1, max: 256, def: 4 }),
  /** curves: brokers of the scale curve (1 to 3 run on this machine). */
  BENCH_CURVES_BROKERS: env.list(intItem(1, 3), { def: '1,2,3', min: 1, max: 3, expected: 'broker counts from 1 to 3, comma-separated' }),
  /** curves: gateways of the scale curve, the load spread evenly over them (1 or 2). */
  BENCH_CURVES_GATEWAYS: env.list(intItem(1, 2), { def: '1,2', min: 1, max: 2, expected: 'gateway counts 1 and/or 2, comma-separated' }),
  /** curves: connections of the scale curve in all, split over the gateways. */
  BENCH_CURVES_SCALE_CONNECTIONS: env.int({ min: 2, max: 512, def: 32 }),
  /** curves: distinct spoofed sources the knock sniffer is made to track (each sends one first-knock SYN). */
  BENCH_CURVES_KNOCK_SOURCES: env.list(intItem(100, 1_000_000), { def: '1000,10000,100000,1000000', min: 1, max: 8, expected: 'source counts from 100 to 1000000, comma-separated' }),
  /** curves: SYN/s at which the sources are sent. */
  BENCH_CURVES_KNOCK_SOURCE_RATE: env.int({ min: 100, max: 200_000, def: 25_000 }),
  /** curves: SYN rates of the knock sniffer's rate curve, SYN/s. */
  BENCH_CURVES_SYN_RATES: env.list(intItem(100, 200_000), { def: '2000,10000,25000', min: 1, max: 8, expected: 'SYN rates from 100 to 200000, comma-separated' }),
  /** curves: seconds of each point of the SYN rate curve. */
  BENCH_CURVES_SYN_SECONDS: env.int({ min: 1, max: 120, def: 4 }),
  /** Busy host: cores of other work (other containers + other host processes) a window may see, in thousandths. */
  BENCH_MAX_OTHER_MILLICORES: env.int({ min: 0, max: 64_000, def: 150 }),
  /** Busy host: steal a window may see, percent of the machine's CPU time. */
  BENCH_MAX_STEAL_PERCENT: env.int({ min: 0, max: 100, def: 5 }),
  /** Busy host: length of the idle window measured before a section. */
  BENCH_QUIET_SECONDS: env.int({ min: 1, max: 60, def: 5 }),
  /** Busy host: how long to wait for a quiet idle window before refusing. */
  BENCH_QUIET_WAIT_SECONDS: env.int({ min: 0, max: 3600, def: 120 }),
  /** Busy host: rounds that may be discarded and run again (after a quiet window) per section. */
  BENCH_BUSY_RETRIES: env.int({ min: 0, max: 20, def: 2 }),
  /**
   * Measure on a busy host anyway, to try the harness out: the figures are written to
   * bench/results/unreported/ and never to BENCHMARKS.md.
   */
  BENCH_ALLOW_BUSY: env.bool(false),
};

export type BenchConfig = EnvOf<typeof SHAPE>;

/** Fewer rounds per side than this and a section's figures are not published. */
export const MIN_REPORTED_ROUNDS = 5;

/**
 * The curves section measures many points instead of one, so it is published with fewer
 * rounds per point than the others (and says so): at least this many.
 */
export const MIN_REPORTED_CURVE_ROUNDS = 3;

let cached: BenchConfig | undefined;

export function benchConfig(): BenchConfig {
  cached ??= parseEnv(SHAPE);
  return cached;
}

/** How long to wait for a quiet window: not at all when a busy host is accepted anyway. */
export function quietWait(c: BenchConfig): number {
  return c.BENCH_ALLOW_BUSY ? 0 : c.BENCH_QUIET_WAIT_SECONDS;
}

export function busyThresholds(c: BenchConfig): BusyThresholds {
  return { maxOtherCores: c.BENCH_MAX_OTHER_MILLICORES / 1000, maxStealFraction: c.BENCH_MAX_STEAL_PERCENT / 100 };
}
