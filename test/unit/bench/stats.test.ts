import assert from 'node:assert/strict';
import { latencySamples, percentiles, pooled, quantileInterval, roundOrder, samplesNeeded, sortedQuantile, spread, spreadText, tailQuantile } from '../../../bench/stats';

/** 1, 2, …, n ms: quantile q of these is known exactly (1 + (n − 1)·q). */
const ramp = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
const near = (actual: number | null, expected: number, what: string): void => {
  assert.ok(actual !== null && Math.abs(actual - expected) < 1e-6, `${what}: ${actual} ≠ ${expected}`);
};

describe('bench stats: failures count in latency at their timeout', () => {
  it('adds each failed request as a sample at the timeout, sorted with the answered ones', () => {
    assert.deepEqual(latencySamples([30, 10, 20], 2, 15_000), [10, 20, 30, 15_000, 15_000]);
  });

  it('moves p99.9 to the timeout once more than 0.1 % of requests failed, where leaving them out would not', () => {
    const ok = ramp(20_000).map((x) => x / 2);
    const without = percentiles(latencySamples(ok, 0, 15_000));
    const with25 = percentiles(latencySamples(ok, 25, 15_000));
    // Positive control: the same answered requests alone have their p99.9 near 10 s, under the timeout.
    near(without.p999, 9990.0005, 'p99.9 without failures');
    assert.equal(with25.p999, 15_000);
    assert.equal(with25.n, 20_025);
  });

  it('caps an answer slower than the timeout at the timeout', () => {
    assert.deepEqual(latencySamples([5, 90_000], 0, 15_000), [5, 15_000]);
  });

  it('refuses a failure count that is not a count', () => {
    assert.throws(() => latencySamples([], -1, 1000), RangeError);
    assert.throws(() => latencySamples([], 1.5, 1000), RangeError);
  });
});

describe('bench stats: percentiles up to p99.9', () => {
  it('interpolates between ranks', () => {
    assert.equal(sortedQuantile(ramp(11), 0.5), 6);
    assert.equal(sortedQuantile([10, 20], 0.25), 12.5);
    assert.ok(Number.isNaN(sortedQuantile([], 0.5)));
  });

  it('reports p50, p90, p99, p99.9 and the maximum of 10,000 samples', () => {
    const p = percentiles(ramp(10_000));
    assert.equal(p.n, 10_000);
    near(p.p50, 5000.5, 'p50');
    near(p.p90, 9000.1, 'p90');
    near(p.p99, 9900.01, 'p99');
    near(p.p999, 9990.001, 'p99.9');
    assert.equal(p.max, 10_000);
  });

  it('leaves out a quantile with fewer than 10 samples beyond it, and shows it from exactly enough', () => {
    assert.equal(samplesNeeded(0.999), 10_000);
    assert.equal(samplesNeeded(0.99), 1000);
    assert.equal(tailQuantile(ramp(9999), 0.999), null);
    assert.notEqual(tailQuantile(ramp(10_000), 0.999), null);
    const p = percentiles(ramp(2000));
    assert.notEqual(p.p99, null);
    assert.equal(p.p999, null);
  });

  it('pools rounds into one ascending sample', () => {
    assert.deepEqual(pooled([[1, 5], [2, 3], []]), [1, 2, 3, 5]);
  });

  it('gives a 95 % interval for p99 that holds the true p99 and narrows with more samples', () => {
    const small = quantileInterval(ramp(2000), 0.99)!;
    const large = quantileInterval(ramp(200_000), 0.99)!;
    assert.ok(small[0] <= 0.99 * 2000 && small[1] >= 0.99 * 2000, `interval ${small.join("–")}`);
    assert.ok(large[0] <= 0.99 * 200_000 && large[1] >= 0.99 * 200_000, `interval ${large.join("–")}`);
    // Relative width: about ±0.45 % of the ranks at n = 2,000, ±0.045 % at n = 200,000.
    assert.ok((small[1] - small[0]) / 2000 > 5 * ((large[1] - large[0]) / 200_000));
    assert.equal(quantileInterval(ramp(999), 0.99), null);
  });
});

describe('bench stats: spread over rounds', () => {
  it('gives min, median and max, leaving out rounds without a figure', () => {
    assert.deepEqual(spread([3, 1, NaN, 2]), { n: 3, min: 1, median: 2, max: 3 });
    assert.equal(spreadText([496.94, 455.12, 512]), '496.9 [455.1–512]');
    assert.equal(spreadText([NaN]), '—');
  });
});

describe('bench stats: the order sides run in within a round', () => {
  for (const n of [2, 3, 4, 5]) {
    it(`over ${n % 2 === 0 ? n : 2 * n} rounds puts each of ${n} sides in each position, and after each other side, equally often`, () => {
      const rounds = n % 2 === 0 ? n : 2 * n;
      const position = Array.from({ length: n }, () => new Array<number>(n).fill(0));
      const follows = new Map<string, number>();
      for (let r = 0; r < rounds; r++) {
        const order = roundOrder(n, r);
        assert.deepEqual([...order].sort(), Array.from({ length: n }, (_, i) => i), `round ${r} is a permutation`);
        order.forEach((side, pos) => position[side]![pos]!++);
        for (let i = 1; i < n; i++) follows.set(`${order[i - 1]}>${order[i]}`, (follows.get(`${order[i - 1]}>${order[i]}`) ?? 0) + 1);
      }
      const perPosition = rounds / n;
      for (const row of position) assert.deepEqual(row, new Array<number>(n).fill(perPosition));
      assert.equal(follows.size, n * (n - 1), 'every ordered pair of sides is adjacent');
      assert.deepEqual(new Set(follows.values()), new Set([rounds / n]));
    });
  }

  it('does not always put the first side first', () => {
    assert.deepEqual([0, 1, 2, 3, 4].map((r) => roundOrder(4, r).indexOf(0)), [0, 1, 3, 2, 0]);
  });
});
