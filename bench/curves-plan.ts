/**
 * The pure part of the curves section: in what order its runs go, how a point's rounds are
 * summed up, where a curve peaks and whether anything failed up to there, and how far the
 * knock sniffer's source count may be driven. No I/O: test/unit/bench/curves-plan.test.ts.
 */
import { percentiles, pooled, roundOrder, spread, spreadText, type Spread } from './stats';

/** One step of a curve's plan: a point in a round, with its sides in the order they run. */
export interface PlannedStep<P, S> {
  /** 0-based. */
  round: number;
  point: P;
  sides: S[];
}

/** Points ascending, without repeats (settings may list them in any order). */
export function curvePoints(xs: readonly number[]): number[] {
  return [...new Set(xs)].sort((a, b) => a - b);
}

/**
 * Every point in every round, each with every side. The points go up in even rounds and
 * down in odd ones, so whatever the run leaves behind (a grown table, a warm cache) does
 * not always fall on the largest point; within a point the sides take turns
 * (stats.roundOrder, shifted by the point), so neither always goes first.
 */
export function planCurve<P, S>(points: readonly P[], sides: readonly S[], rounds: number): PlannedStep<P, S>[] {
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
  if (points.length === 0 || sides.length === 0) throw new RangeError('a curve needs at least one point and one side');
  const out: PlannedStep<P, S>[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? points.map((_, i) => i) : points.map((_, i) => points.length - 1 - i);
    for (const i of order) out.push({ round, point: points[i]!, sides: roundOrder(sides.length, round + i).map((k) => sides[k]!) });
  }
  return out;
}

/** What one run of a point gave, as the summary needs it. */
export interface PointRun {
  okPerSecond: number;
  /** Latency samples ascending, failures at the timeout (stats.latencySamples). */
  latency: readonly number[];
  statuses: Readonly<Record<string, number>>;
}

export interface PointSummary {
  throughput: Spread;
  /** p99 of each round that has enough samples for one (stats.MIN_TAIL_SAMPLES). */
  p99Rounds: Spread;
  /** p99 of every round's samples pooled; null with too thin a tail. */
  p99Pooled: number | null;
  samples: number;
  /** Answers other than the expected status, no answer included, by status. */
  errors: Record<string, number>;
  errorCount: number;
}

/** A point's rounds summed up: throughput and p99 over rounds, p99 pooled, every error. */
export function summarisePoint(runs: readonly PointRun[], expected: number): PointSummary {
  const errors: Record<string, number> = {};
  for (const r of runs) {
    for (const [status, n] of Object.entries(r.statuses)) if (Number(status) !== expected && n > 0) errors[status] = (errors[status] ?? 0) + n;
  }
  const all = pooled(runs.map((r) => r.latency));
  return {
    throughput: spread(runs.map((r) => r.okPerSecond)),
    p99Rounds: spread(runs.map((r) => percentiles(r.latency).p99 ?? NaN)),
    p99Pooled: percentiles(all).p99,
    samples: all.length,
    errors,
    errorCount: Object.values(errors).reduce((s, n) => s + n, 0),
  };
}

/** "503×4, no answer×1", or "none". */
export function errorsText(errors: Readonly<Record<string, number>>): string {
  const bad = Object.entries(errors).filter(([, n]) => n > 0);
  return bad.length === 0 ? 'none' : bad.map(([s, n]) => `${s === '0' ? 'no answer' : s}×${n}`).join(', ');
}

/** "812.3 [790.1–830]" for a spread (one decimal), or "—". */
export function spreadOf(s: Spread, digits = 1): string {
  return s.n === 0 ? '—' : spreadText([s.min, s.median, s.max], digits);
}

/** The point with the highest median throughput (the first of equals); -1 for none. */
export function peakIndex(medians: readonly number[]): number {
  let best = -1;
  medians.forEach((m, i) => {
    if (Number.isFinite(m) && (best < 0 || m > medians[best]!)) best = i;
  });
  return best;
}

export interface PeakCheck {
  peak: number;
  /** Labels of the points up to the peak that saw an error. */
  withErrors: string[];
  text: string;
}

/**
 * The issue's target, "no error at any point of the curves below the chain's peak", for one
 * curve. `loadAxis`: the points are more and more load (connections), so only those up to
 * the peak count; otherwise (body size, brokers, gateways) each point is a workload of its
 * own at its own saturation, and every point counts.
 */
export function errorsBelowPeak(points: readonly { label: string; median: number; errorCount: number; errors: Readonly<Record<string, number>> }[], loadAxis: boolean, whose = "the chain's"): PeakCheck {
  const peak = peakIndex(points.map((p) => p.median));
  if (peak < 0) return { peak, withErrors: [], text: 'no point has a throughput, so no peak' };
  const counted = loadAxis ? points.slice(0, peak + 1) : points;
  const bad = counted.filter((p) => p.errorCount > 0);
  const where = loadAxis ? `at or below ${whose} peak (${points[peak]!.label})` : `at any point (each is its own workload; peak at ${points[peak]!.label})`;
  const text = bad.length === 0 ? `no error ${where}` : `errors ${where}: ${bad.map((p) => `${p.label}: ${errorsText(p.errors)}`).join('; ')}`;
  return { peak, withErrors: bad.map((p) => p.label), text };
}

/** A step of the knock sniffer's source curve: send `add` new sources, from address `offset` on. */
export interface SourceStep {
  target: number;
  add: number;
  offset: number;
}

export interface SourcePlan {
  steps: SourceStep[];
  /** Targets left out, each with why. */
  skipped: { target: number; why: string }[];
}

/**
 * The source curve's cumulative steps (each adds sources to those already tracked, fresh
 * addresses from the next offset) as far as two bounds allow:
 * - time: every source must still be tracked when the last step is read, so all steps
 *   together must be sent within `holdSeconds` (the gateway's step timeout under test) at
 *   `rate`, counting `pauseSeconds` of measurement after each step;
 * - the host's connection tracking: Docker's bridges pass through the host's netfilter
 *   (br_netfilter), which keeps an entry per spoofed flow for minutes; a full table drops
 *   every new connection on the machine. `conntrackRoom` is how many more entries the run
 *   may add; flows already sent in this run (`sentBefore`: the addresses below it) are the
 *   same entries again, not new ones.
 */
export function planSources(targets: readonly number[], o: { rate: number; holdSeconds: number; pauseSeconds: number; conntrackRoom: number; sentBefore: number }): SourcePlan {
  const steps: SourceStep[] = [];
  const skipped: { target: number; why: string }[] = [];
  let have = 0;
  let seconds = 0;
  for (const target of curvePoints(targets)) {
    const add = target - have;
    const stepSeconds = add / o.rate + o.pauseSeconds;
    const fresh = Math.max(0, target - Math.max(have, o.sentBefore));
    const freshSoFar = Math.max(0, have - o.sentBefore);
    if (skipped.length > 0) {
      skipped.push({ target, why: 'a smaller point was already out of reach' });
      continue;
    }
    const why: string[] = [];
    if (seconds + stepSeconds > o.holdSeconds) {
      why.push(`sending ${target} sources at ${o.rate} SYN/s, with ${o.pauseSeconds} s of measurement after each step, takes ${Math.round(seconds + stepSeconds)} s, beyond the ${o.holdSeconds} s a source stays tracked (the step timeout under test)`);
    }
    if (freshSoFar + fresh > o.conntrackRoom) {
      why.push(`${target} distinct spoofed flows would add ${freshSoFar + fresh} entries to the host's connection tracking, which has room for ${Math.max(0, Math.floor(o.conntrackRoom))} more in this run (Docker's bridge traffic passes the host's netfilter; a full table drops every new connection on the machine)`);
    }
    if (why.length > 0) {
      skipped.push({ target, why: why.join('; and ') });
    } else {
      steps.push({ target, add, offset: have });
      have = target;
      seconds += stepSeconds;
    }
  }
  return { steps, skipped };
}
