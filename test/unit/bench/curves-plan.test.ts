import assert from 'node:assert/strict';
import { curvePoints, errorsBelowPeak, errorsText, peakIndex, planCurve, planSources, summarisePoint } from '../../../bench/curves-plan';

describe('bench curves: the plan of a curve', () => {
  it('sorts the points and drops repeats', () => {
    assert.deepEqual(curvePoints([256, 1, 16, 4, 16]), [1, 4, 16, 256]);
  });

  it('runs every point once per round with every side, points up in even rounds and down in odd ones', () => {
    const plan = planCurve([1, 4, 16], ['chain', 'direct'], 3);
    assert.equal(plan.length, 9);
    assert.deepEqual(
      plan.map((s) => [s.round, s.point]),
      [
        [0, 1],
        [0, 4],
        [0, 16],
        [1, 16],
        [1, 4],
        [1, 1],
        [2, 1],
        [2, 4],
        [2, 16],
      ],
    );
    for (const s of plan) assert.deepEqual([...s.sides].sort(), ['chain', 'direct']);
  });

  it('lets neither side always go first: over the rounds each leads at each point', () => {
    const plan = planCurve([1, 4, 16, 64, 256], ['chain', 'direct'], 2);
    for (const point of [1, 4, 16, 64, 256]) {
      const firsts = plan.filter((s) => s.point === point).map((s) => s.sides[0]);
      assert.deepEqual([...firsts].sort(), ['chain', 'direct'], `point ${point}: ${firsts.join(', ')}`);
    }
    // And within one round the lead changes from point to point.
    assert.notEqual(plan[0]!.sides[0], plan[1]!.sides[0]);
  });

  it('refuses a plan with no rounds, points or sides', () => {
    assert.throws(() => planCurve([1], ['a'], 0), RangeError);
    assert.throws(() => planCurve([], ['a'], 1), RangeError);
    assert.throws(() => planCurve([1], [], 1), RangeError);
  });
});

describe('bench curves: a point summed up over its rounds', () => {
  const ramp = (n: number, scale = 1): number[] => Array.from({ length: n }, (_, i) => (i + 1) * scale);

  it('gives throughput over rounds, p99 per round and pooled, and every error by status', () => {
    const s = summarisePoint(
      [
        { okPerSecond: 100, latency: ramp(1000), statuses: { 201: 1000 } },
        { okPerSecond: 300, latency: ramp(1000, 2), statuses: { 201: 998, 503: 2 } },
        { okPerSecond: 200, latency: ramp(500), statuses: { 201: 499, 0: 1 } },
      ],
      201,
    );
    assert.deepEqual([s.throughput.min, s.throughput.median, s.throughput.max], [100, 200, 300]);
    // The 500-sample round has too thin a tail for a p99 of its own: two rounds count.
    assert.equal(s.p99Rounds.n, 2);
    assert.ok(Math.abs(s.p99Rounds.min - 990.01) < 1e-6 && Math.abs(s.p99Rounds.max - 1980.02) < 1e-6, `${s.p99Rounds.min}, ${s.p99Rounds.max}`);
    assert.equal(s.samples, 2500);
    assert.notEqual(s.p99Pooled, null);
    assert.deepEqual(s.errors, { 503: 2, 0: 1 });
    assert.equal(s.errorCount, 3);
    assert.equal(errorsText(s.errors), 'no answer×1, 503×2');
  });

  it('counts no error when every answer is the expected one', () => {
    const s = summarisePoint([{ okPerSecond: 5, latency: [1, 2], statuses: { 200: 2 } }], 200);
    assert.equal(s.errorCount, 0);
    assert.equal(errorsText(s.errors), 'none');
    assert.equal(s.p99Pooled, null);
  });
});

describe("bench curves: errors below the chain's peak", () => {
  const point = (label: string, median: number, errors: Record<string, number> = {}) => ({ label, median, errors, errorCount: Object.values(errors).reduce((s, n) => s + n, 0) });

  it('finds the peak as the highest median throughput, the first of equals', () => {
    assert.equal(peakIndex([10, 30, 30, 20]), 1);
    assert.equal(peakIndex([NaN, 5]), 1);
    assert.equal(peakIndex([]), -1);
  });

  it('on a load axis, counts errors up to the peak and not past it', () => {
    const points = [point('1', 100), point('16', 800), point('64', 900), point('256', 700, { 503: 40 })];
    const ok = errorsBelowPeak(points, true);
    assert.equal(ok.peak, 2);
    assert.deepEqual(ok.withErrors, []);
    assert.match(ok.text, /^no error at or below the chain's peak \(64\)$/);
    // Positive control: the same error at a point below the peak is reported.
    const bad = errorsBelowPeak([point('1', 100), point('16', 800, { 503: 3 }), point('64', 900), point('256', 700)], true);
    assert.deepEqual(bad.withErrors, ['16']);
    assert.match(bad.text, /16: 503×3/);
    // An error at the peak itself counts too.
    assert.deepEqual(errorsBelowPeak([point('1', 100), point('64', 900, { 0: 1 }), point('256', 700)], true).withErrors, ['64']);
  });

  it('off a load axis, counts errors at every point', () => {
    const r = errorsBelowPeak([point('1 KiB', 900), point('1 MiB', 40, { 0: 1 })], false);
    assert.deepEqual(r.withErrors, ['1 MiB']);
    assert.match(r.text, /no answer×1/);
  });
});

describe('bench curves: how far the knock sniffer is driven', () => {
  const loose = { rate: 25_000, holdSeconds: 55, pauseSeconds: 4, conntrackRoom: Infinity, sentBefore: 0 };

  it('adds sources step by step, each step fresh addresses after the last', () => {
    const p = planSources([10_000, 1000, 100_000], loose);
    assert.deepEqual(p.steps, [
      { target: 1000, add: 1000, offset: 0 },
      { target: 10_000, add: 9000, offset: 1000 },
      { target: 100_000, add: 90_000, offset: 10_000 },
    ]);
    assert.deepEqual(p.skipped, []);
  });

  it('stops where the sources could no longer all be tracked at once, and says why', () => {
    // 1,000,000 at 20,000 SYN/s: 50 s of sending and 3 pauses of 4 s, past the 55 s a source is held.
    const p = planSources([1000, 100_000, 1_000_000], { ...loose, rate: 20_000 });
    assert.deepEqual(p.steps.map((s) => s.target), [1000, 100_000]);
    assert.equal(p.skipped.length, 1);
    assert.match(p.skipped[0]!.why, /takes 62 s, beyond the 55 s/);
    // Positive control: at 25,000 SYN/s the same points fit (52 s).
    assert.deepEqual(planSources([1000, 100_000, 1_000_000], loose).steps.map((s) => s.target), [1000, 100_000, 1_000_000]);
  });

  it("stops before the host's connection tracking would fill, counting flows sent before as no new entries", () => {
    const tight = { ...loose, conntrackRoom: 50_000 };
    const first = planSources([1000, 10_000, 100_000], tight);
    assert.deepEqual(first.steps.map((s) => s.target), [1000, 10_000]);
    assert.match(first.skipped[0]!.why, /connection tracking/);
    // 50,000 sources of which the first 10,000 were sent before: 40,000 new flows, within a room of 45,000.
    const again = planSources([50_000], { ...tight, conntrackRoom: 45_000, sentBefore: 10_000 });
    assert.deepEqual(again.steps.map((s) => s.target), [50_000]);
    // Positive control: with nothing sent before they are 50,000 new flows, past it.
    assert.deepEqual(planSources([50_000], { ...tight, conntrackRoom: 45_000 }).steps, []);
  });

  it('gives every reason a point is out of reach', () => {
    const p = planSources([1000, 1_000_000], { ...loose, rate: 10_000, conntrackRoom: 100_000 });
    assert.deepEqual(p.steps.map((s) => s.target), [1000]);
    assert.match(p.skipped[0]!.why, /beyond the 55 s.*; and .*connection tracking/);
  });

  it('leaves out every point after one out of reach', () => {
    const p = planSources([1000, 2_000_000, 3_000_000], loose);
    assert.deepEqual(p.steps.map((s) => s.target), [1000]);
    assert.deepEqual(p.skipped.map((s) => s.target), [2_000_000, 3_000_000]);
    assert.match(p.skipped[1]!.why, /smaller point/);
  });
});
