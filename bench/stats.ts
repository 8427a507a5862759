/**
 * Small statistics over samples. Pure: the unit tests in test/unit/bench/ cover them.
 *
 * `quantile` and `failures` serve the knock section, where a NaN sample is a knock that
 * never opened (counted, not averaged). The request benchmarks use `latencySamples`
 * instead: there a failed request is a latency sample at its timeout, so failures push
 * the tail out rather than vanish from it.
 */
export function quantile(samples: readonly number[], q: number): number {
  const xs = samples.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return sortedQuantile(xs, q);
}

export function failures(samples: readonly number[]): number {
  return samples.filter((x) => !Number.isFinite(x)).length;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Linear interpolation between the two closest ranks of an ascending array; NaN when empty. */
export function sortedQuantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const pos = (xs.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return xs[lo]! + (xs[hi]! - xs[lo]!) * (pos - lo);
}

/**
 * The latency samples of a run: every answered request at its latency, and every failed one
 * (wrong status, reset, no answer) at the client's timeout, ascending. A failure is the
 * worst a user saw, so leaving it out would make a failing path look fast.
 */
export function latencySamples(okMs: readonly number[], failed: number, timeoutMs: number): number[] {
  if (!Number.isInteger(failed) || failed < 0) throw new RangeError(`failed must be a count, got ${failed}`);
  const xs = okMs.map((x) => Math.min(x, timeoutMs));
  for (let i = 0; i < failed; i++) xs.push(timeoutMs);
  return xs.sort((a, b) => a - b);
}

/**
 * How many samples must lie beyond a quantile for it to be reported: with fewer, the figure
 * is one or two requests, not a tail (p99.9 of 2,000 samples is the 2nd-worst request).
 */
export const MIN_TAIL_SAMPLES = 10;

/** Samples needed for quantile `q` to have MIN_TAIL_SAMPLES beyond it. */
export function samplesNeeded(q: number): number {
  return Math.ceil(MIN_TAIL_SAMPLES / (1 - q) - 1e-9);
}

/** A quantile of ascending samples, or null when too few lie beyond it (MIN_TAIL_SAMPLES). */
export function tailQuantile(xs: readonly number[], q: number): number | null {
  return xs.length >= samplesNeeded(q) ? sortedQuantile(xs, q) : null;
}

/**
 * Distribution-free 95 % interval for quantile `q` of ascending samples: the order
 * statistics at ranks n·q ± 1.96·√(n·q·(1−q)) (normal approximation of the binomial count
 * of samples below the true quantile). Null when the tail is too thin to report the quantile.
 */
export function quantileInterval(xs: readonly number[], q: number): [number, number] | null {
  if (xs.length < samplesNeeded(q)) return null;
  const n = xs.length;
  const half = 1.96 * Math.sqrt(n * q * (1 - q));
  const lo = Math.max(1, Math.floor(n * q - half));
  const hi = Math.min(n, Math.ceil(n * q + half));
  return [xs[lo - 1]!, xs[hi - 1]!];
}

export interface Percentiles {
  /** Samples (answered + failed). */
  n: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

/** p50 … p99.9 and the maximum of ascending samples; a quantile with too thin a tail is null. */
export function percentiles(xs: readonly number[]): Percentiles {
  return {
    n: xs.length,
    p50: tailQuantile(xs, 0.5),
    p90: tailQuantile(xs, 0.9),
    p99: tailQuantile(xs, 0.99),
    p999: tailQuantile(xs, 0.999),
    max: xs.length > 0 ? xs[xs.length - 1]! : null,
  };
}

/** Merges ascending sample arrays into one ascending array (the rounds of one side, pooled). */
export function pooled(runs: readonly (readonly number[])[]): number[] {
  return runs.flat().sort((a, b) => a - b);
}

export interface Spread {
  n: number;
  min: number;
  median: number;
  max: number;
}

/** Min, median and max over rounds; NaN entries (a round with no figure) are left out and not counted. */
export function spread(xs: readonly number[]): Spread {
  const ys = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (ys.length === 0) return { n: 0, min: NaN, median: NaN, max: NaN };
  return { n: ys.length, min: ys[0]!, median: sortedQuantile(ys, 0.5), max: ys[ys.length - 1]! };
}

/** "median [min–max]", e.g. "496.9 [455.1–512]"; "—" when there is nothing to show. */
export function spreadText(xs: readonly number[], digits = 1): string {
  const s = spread(xs);
  if (s.n === 0) return '—';
  return `${round(s.median, digits)} [${round(s.min, digits)}–${round(s.max, digits)}]`;
}

/** A figure that may be missing ("—"), rounded. */
export function fig(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : String(round(x, digits));
}

/**
 * The order in which `n` sides run in round `round` (0-based): a Williams design, a Latin
 * square in which, over n consecutive rounds (2n for odd n), every side runs in every
 * position equally often and directly after every other side equally often. So no side is
 * always first, and whatever one side leaves behind (a backlog, a grown database, a warm
 * cache) lands on each of the others alike.
 */
export function roundOrder(n: number, round: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  const first: number[] = [];
  for (let i = 0, lo = 0, hi = n - 1; i < n; i++) first.push(i % 2 === 0 ? lo++ : hi--);
  // For odd n the square and its mirror together balance the neighbours.
  const row = n % 2 === 1 && Math.floor(round / n) % 2 === 1 ? [...first].reverse() : first;
  return row.map((x) => (x + round) % n);
}
