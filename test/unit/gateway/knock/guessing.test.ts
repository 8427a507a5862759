import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { TimeSpec } from '../../../../services/common/knock/sequence';
import { ACCEPTED_WINDOWS, DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE_BOUNDS, GUESS_FLOOR_LOG2, guessChancePerSyn, guessWorkLog2, tailSpaceLog2 } from '../../../../services/common/knock/strength';
import { KnockTracker, type KnockOutcome, type TrackerOptions } from '../../../../services/gateway/knock/tracker';

/**
 * The guessing math of common/knock/strength.ts against the real tracker: random guessing
 * over a small range, where successes are frequent enough to count, must succeed as often
 * as the formula says — within the statistical error of the count — and no more often
 * from one address than the per-SYN bound.
 */
const R = 16;
const L = 3;
const PERIOD = 30_000;
const spec: TimeSpec = { mode: 'time', secret: Buffer.alloc(32, 0x5a), length: L, rangeStart: 20000, rangeEnd: 20000 + R - 1, periodMs: PERIOD };
/** The budget the gateway runs with by default (config.ts): 10 attempts, one more per 6 s. */
const DEFAULT_BUDGET = { attempts: 10, refillMs: 6000 };

function simulation(options: Partial<TrackerOptions> = {}) {
  const clock = { t: 57_000_000 * PERIOD };
  const tracker = new KnockTracker({ spec, stepTimeoutMs: 5000, sequenceTimeoutMs: 15_000, maxSources: 100_000, now: () => clock.t, ...options });
  const counts = new Map<KnockOutcome, number>();
  let syns = 0;
  const send = (src: string, dport: number, stepMs: number): KnockOutcome => {
    clock.t += stepMs;
    syns++;
    const outcome = tracker.onSyn({ src, dport, sport: 30000 + (syns % 30000), seq: syns });
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    return outcome;
  };
  // A guess that completes a valid sequence: 'opened', or 'replay' when an earlier guess
  // already used that (window, nonce) — a guess just as right, refused by another layer.
  const guessed = (): number => (counts.get('opened') ?? 0) + (counts.get('replay') ?? 0);
  return { tracker, clock, counts, send, guessed, syns: () => syns };
}

/** `count` distinct random ports of the range, none of them in `avoid`. */
function distinctPorts(count: number, avoid: readonly number[]): number[] {
  const out: number[] = [];
  while (out.length < count) {
    const p = spec.rangeStart + randomInt(R);
    if (!avoid.includes(p) && !out.includes(p)) out.push(p);
  }
  return out;
}

describe('guessing a time-based knock (simulation against the tracker)', () => {
  it('opens for one attempt in N/W when the attempts come from many addresses, as the formula says', () => {
    const sim = simulation({ budget: DEFAULT_BUDGET });
    const attempts = 120_000;
    for (let i = 0; i < attempts; i++) {
      // 2000 addresses in turn: each comes back after 60 s, long after its last attempt timed out.
      const src = `10.1.${(i % 2000) >> 8}.${(i % 2000) & 255}`;
      const first = spec.rangeStart + randomInt(R);
      for (const port of [first, ...distinctPorts(L - 1, [first])]) sim.send(src, port, 10);
    }
    const p = ACCEPTED_WINDOWS / ((R - 1) * (R - 2));
    const expected = attempts * p;
    const sigma = Math.sqrt(attempts * p * (1 - p));
    const got = sim.guessed();
    assert.ok(Math.abs(got - expected) <= 4 * sigma, `${got} successes in ${attempts} attempts; the formula predicts ${expected.toFixed(0)} ± ${sigma.toFixed(0)}`);
    // Per SYN that is p / L, under the bound W/N the floor is computed from.
    assert.ok(got / sim.syns() <= guessChancePerSyn(R, L));
    assert.equal(sim.counts.get('throttled') ?? 0, 0, 'one attempt per address a minute is within the budget');
  });

  it('opens no more often per SYN than W/N for one address sending random SYNs back to back (no budget)', () => {
    const sim = simulation();
    const syns = 300_000;
    const recent: number[] = [];
    for (let i = 0; i < syns; i++) {
      // Never a port of its last L-1 SYNs: every SYN ends a tail of valid shape, the best a guesser can do.
      const [port] = distinctPorts(1, recent);
      sim.send('203.0.113.66', port!, 1);
      recent.push(port!);
      if (recent.length > L - 1) recent.shift();
    }
    const bound = guessChancePerSyn(R, L);
    const sigma = Math.sqrt(bound * (1 - bound) / syns);
    const rate = sim.guessed() / syns;
    assert.ok(rate <= bound + 4 * sigma, `measured ${rate} per SYN against the bound ${bound}`);
    // The control: guessing does work at about that rate (every SYN but the continuations starts an attempt).
    assert.ok(rate >= bound / 2, `measured ${rate} per SYN, far under the bound ${bound}: the simulation is not guessing`);
  });

  it('holds one address that keeps guessing to its budget: 10 attempts, then one per 6 s', () => {
    // The default range and length, where a random SYN continues an attempt about 3 times in 1000:
    // what passes the budget is then the attempts it allows, plus rarely one continuation.
    const [rangeStart, rangeEnd] = DEFAULT_KNOCK_PORT_RANGE_BOUNDS;
    const sim = simulation({ spec: { ...spec, length: DEFAULT_KNOCK_LENGTH, rangeStart, rangeEnd }, budget: DEFAULT_BUDGET });
    // 1000 random SYNs a second for 60 s.
    for (let i = 0; i < 60_000; i++) sim.send('203.0.113.66', rangeStart + randomInt(rangeEnd - rangeStart + 1), 1);
    const started = 60_000 - (sim.counts.get('throttled') ?? 0);
    // 10 at once, and one per 6 s in the 59.999 s from the first SYN to the last.
    const allowed = DEFAULT_BUDGET.attempts + Math.floor((60_000 - 1) / DEFAULT_BUDGET.refillMs);
    assert.ok(started >= allowed && started <= allowed + 2, `${started} SYNs were not throttled; the budget allows ${allowed} attempts`);
    sim.tracker.sweep();
    assert.equal(sim.tracker.stats().budget.throttled, 1);
  });

  it('puts the defaults above the floor: 8 knocks in 1000 ports cost a guesser at least 2^64 SYNs, 7 would not', () => {
    const [start, end] = DEFAULT_KNOCK_PORT_RANGE_BOUNDS;
    const size = end - start + 1;
    assert.equal(size, 1000);
    assert.equal(DEFAULT_KNOCK_LENGTH, 8);
    // N = 999·998·…·993, computed exactly.
    let n = 1n;
    for (let k = 1; k < DEFAULT_KNOCK_LENGTH; k++) n *= BigInt(size - k);
    assert.equal(n, 972_320_046_755_881_062_960n);
    assert.ok(Math.abs(tailSpaceLog2(size, DEFAULT_KNOCK_LENGTH) - Math.log2(Number(n))) < 1e-9);
    assert.ok(n / BigInt(2 * ACCEPTED_WINDOWS) >= 2n ** BigInt(GUESS_FLOOR_LOG2));
    assert.ok(guessWorkLog2(size, DEFAULT_KNOCK_LENGTH) >= GUESS_FLOOR_LOG2);
    assert.ok(guessWorkLog2(size, DEFAULT_KNOCK_LENGTH - 1) < GUESS_FLOOR_LOG2);
  });
});
