import assert from 'node:assert/strict';
import { timeSequence, type KnockSpec, type TimeSpec } from '../../../../services/common/knock/sequence';
import { KnockTracker, lostRecordState, type KnockOutcome, type Syn, type TrackerOptions } from '../../../../services/gateway/knock/tracker';

const SEQUENCE = [7000, 8000, 9000];
/** The stats of a tracker built without a knock budget (the harness's default). */
const NO_BUDGET = { tracked: 0, throttled: 0, evicted: 0 };
const STEP_MS = 1000;
const SEQUENCE_MS = 1500;

interface Harness {
  tracker: KnockTracker;
  clock: { t: number };
  /** A fresh SYN (new source port and sequence number each time, as a knock client sends). */
  syn: (src: string, dport: number) => Syn;
  knock: (src: string, ports: readonly number[], gapMs?: number) => KnockOutcome[];
}

function harness(overrides: Partial<TrackerOptions> = {}, startAt = 1_000_000): Harness {
  const clock = { t: startAt };
  const tracker = new KnockTracker({
    spec: { mode: 'static', ports: SEQUENCE },
    stepTimeoutMs: STEP_MS,
    sequenceTimeoutMs: SEQUENCE_MS,
    maxSources: 1000,
    now: () => clock.t,
    ...overrides,
  });
  let counter = 0;
  const syn = (src: string, dport: number): Syn => {
    counter++;
    return { src, dport, sport: 30000 + (counter % 30000), seq: (counter * 2654435761) >>> 0 };
  };
  const knock = (src: string, ports: readonly number[], gapMs = 0): KnockOutcome[] =>
    ports.map((p, i) => {
      if (i > 0) clock.t += gapMs;
      return tracker.onSyn(syn(src, p));
    });
  return { tracker, clock, syn, knock };
}

describe('KnockTracker (static sequence)', () => {
  it('opens when the sequence ports are hit in order', () => {
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE, 100), ['progress', 'progress', 'opened']);
    assert.equal(h.tracker.stats().tracked, 0);
  });

  it('reuses a static sequence like knockd: the same knock opens again', () => {
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
  });

  it('never opens when the sequence ports arrive out of order', () => {
    const orders = [
      [8000, 7000, 9000],
      [7000, 9000, 8000],
      [9000, 8000, 7000],
      [8000, 9000, 7000],
    ];
    for (const order of orders) {
      const h = harness();
      const outcomes = h.knock('198.51.100.7', order);
      assert.ok(!outcomes.includes('opened'), `${order.join(',')} gave ${outcomes.join(',')}`);
    }
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', [7000, 9000, 8000]), ['progress', 'reset', 'ignored']);
  });

  it('resets progress when a wrong port arrives between two steps', () => {
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', [7000, 1234, 8000, 9000]), ['progress', 'reset', 'ignored', 'ignored']);
    assert.deepEqual(h.knock('198.51.100.7', [7000, 8000, 4321, 9000]), ['progress', 'progress', 'reset', 'ignored']);
    assert.equal(h.tracker.stats().tracked, 0);
    // The reset is not a ban: a clean knock afterwards still opens.
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
  });

  it('never opens for a port scan that touches the sequence ports in order with other ports in between', () => {
    const h = harness({ stepTimeoutMs: 60_000, sequenceTimeoutMs: 60_000 });
    const ascending = Array.from({ length: 3000 }, (_, i) => 6900 + i);
    const outcomes = h.knock('198.51.100.7', ascending, 1);
    assert.ok(!outcomes.includes('opened'));
    // A sparse scan: each sequence port is followed by its neighbour.
    const sparse = h.knock('198.51.100.8', [7000, 7001, 8000, 8001, 9000, 9001]);
    assert.ok(!sparse.includes('opened'), sparse.join(','));
    assert.deepEqual(sparse, ['progress', 'reset', 'ignored', 'ignored', 'ignored', 'ignored']);
  });

  it('tolerates a retransmission of the step just matched (same source port and sequence number)', () => {
    const h = harness();
    const first = h.syn('198.51.100.7', 7000);
    assert.equal(h.tracker.onSyn(first), 'progress');
    assert.equal(h.tracker.onSyn({ ...first }), 'retransmit');
    assert.equal(h.tracker.onSyn({ ...first }), 'retransmit');
    const second = h.syn('198.51.100.7', 8000);
    assert.equal(h.tracker.onSyn(second), 'progress');
    assert.equal(h.tracker.onSyn({ ...second }), 'retransmit');
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 9000)), 'opened');
  });

  it('treats a retransmission of an earlier step (not the one just matched) as noise', () => {
    const h = harness();
    const first = h.syn('198.51.100.7', 7000);
    h.tracker.onSyn(first);
    h.tracker.onSyn(h.syn('198.51.100.7', 8000));
    // 7000 is a first port, so the reset also starts a new attempt.
    assert.equal(h.tracker.onSyn({ ...first }), 'reset');
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 9000)), 'reset');
    assert.equal(h.tracker.stats().tracked, 0);
  });

  it('resets when the port just matched is hit again from a new source port or sequence number', () => {
    const h = harness();
    const first = h.syn('198.51.100.7', 7000);
    h.tracker.onSyn(first);
    const second = h.syn('198.51.100.7', 8000);
    assert.equal(h.tracker.onSyn(second), 'progress');
    assert.equal(h.tracker.onSyn({ ...second, sport: second.sport + 1 }), 'reset');
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 9000)), 'ignored');

    h.tracker.onSyn(h.syn('198.51.100.9', 7000));
    const again = h.syn('198.51.100.9', 8000);
    h.tracker.onSyn(again);
    assert.equal(h.tracker.onSyn({ ...again, seq: (again.seq + 1) >>> 0 }), 'reset');
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.9', 9000)), 'ignored');
  });

  it('restarts the attempt when the repeated port is the first port of the sequence', () => {
    const h = harness();
    const first = h.syn('198.51.100.7', 7000);
    h.tracker.onSyn(first);
    assert.equal(h.tracker.onSyn({ ...first, sport: first.sport + 1 }), 'reset');
    // The repeat itself counted as step one of a new attempt.
    assert.deepEqual(h.knock('198.51.100.7', [8000, 9000]), ['progress', 'opened']);
  });

  it('expires progress when the gap between two steps exceeds the step timeout', () => {
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE, STEP_MS + 1), ['progress', 'ignored', 'ignored']);
    assert.equal(h.tracker.stats().expired, 1);
    // A gap of exactly the step timeout is still in time.
    const ok = harness();
    assert.deepEqual(ok.knock('198.51.100.7', [7000, 8000], STEP_MS), ['progress', 'progress']);
    assert.equal(ok.tracker.onSyn(ok.syn('198.51.100.7', 9000)), 'opened');
  });

  it('expires progress when the whole sequence takes longer than the sequence timeout', () => {
    // Each gap is within the step timeout; the total (1600 ms) is not within 1500 ms.
    const h = harness();
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE, 800), ['progress', 'progress', 'ignored']);
    assert.equal(h.tracker.stats().expired, 1);
    const ok = harness();
    assert.deepEqual(ok.knock('198.51.100.7', SEQUENCE, SEQUENCE_MS / 2), ['progress', 'progress', 'opened']);
  });

  it('drops stale progress on sweep() without any new packet', () => {
    const h = harness();
    h.knock('198.51.100.7', [7000]);
    h.knock('198.51.100.8', [7000, 8000]);
    h.clock.t += STEP_MS - 1;
    assert.equal(h.tracker.sweep(), 0);
    assert.equal(h.tracker.stats().tracked, 2);
    h.knock('198.51.100.9', [7000]);
    h.clock.t += 2;
    assert.equal(h.tracker.sweep(), 2);
    assert.deepEqual(h.tracker.stats(), { tracked: 1, evicted: 0, expired: 2, budget: NO_BUDGET });
    // The swept source has to start over.
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.8', 9000)), 'ignored');
  });

  it('keeps interleaved sources apart', () => {
    const h = harness();
    const a = '198.51.100.7';
    const b = '203.0.113.9';
    assert.equal(h.tracker.onSyn(h.syn(a, 7000)), 'progress');
    assert.equal(h.tracker.onSyn(h.syn(b, 7000)), 'progress');
    assert.equal(h.tracker.onSyn(h.syn(a, 8000)), 'progress');
    // Noise from another source does not reset a's progress.
    assert.equal(h.tracker.onSyn(h.syn(b, 1234)), 'reset');
    assert.equal(h.tracker.onSyn(h.syn('192.0.2.77', 9000)), 'ignored');
    assert.equal(h.tracker.onSyn(h.syn(a, 9000)), 'opened');
    assert.equal(h.tracker.onSyn(h.syn(b, 8000)), 'ignored');
  });

  it('tracks IPv6 sources by address', () => {
    const h = harness();
    assert.deepEqual(h.knock('2001:db8::1', SEQUENCE), ['progress', 'progress', 'opened']);
    h.tracker.onSyn(h.syn('2001:db8::1', 7000));
    h.tracker.onSyn(h.syn('2001:db8::2', 7000));
    assert.equal(h.tracker.onSyn(h.syn('2001:db8::2', 4444)), 'reset');
    assert.deepEqual(h.knock('2001:db8::1', [8000, 9000]), ['progress', 'opened']);
  });

  it('costs no memory for sources that never hit a first port', () => {
    const h = harness({ maxSources: 10 });
    for (let i = 0; i < 20_000; i++) {
      const src = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      assert.equal(h.tracker.onSyn(h.syn(src, i % 2 === 0 ? 8000 : 9000)), 'ignored');
    }
    assert.deepEqual(h.tracker.stats(), { tracked: 0, evicted: 0, expired: 0, budget: NO_BUDGET });
  });

  describe('under a flood of spoofed sources', () => {
    const cap = 100;
    const spoofed = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

    it('keeps the number of tracked sources at or under maxSources', () => {
      const h = harness({ maxSources: cap });
      for (let i = 0; i < 10_000; i++) {
        h.tracker.onSyn(h.syn(spoofed(i), 7000));
        assert.ok(h.tracker.stats().tracked <= cap);
      }
      assert.deepEqual(h.tracker.stats(), { tracked: cap, evicted: 10_000 - cap, expired: 0, budget: NO_BUDGET });
    });

    it('evicts the least recently active source first', () => {
      const h = harness({ maxSources: cap });
      const idle = '198.51.100.1';
      const active = '198.51.100.2';
      h.tracker.onSyn(h.syn(idle, 7000));
      h.tracker.onSyn(h.syn(active, 7000));
      for (let i = 0; i < cap - 2; i++) h.tracker.onSyn(h.syn(spoofed(i), 7000));
      assert.equal(h.tracker.stats().tracked, cap);
      // `active` progresses, so it is now the most recently active; `idle` is the oldest.
      assert.equal(h.tracker.onSyn(h.syn(active, 8000)), 'progress');
      h.tracker.onSyn(h.syn(spoofed(cap), 7000));
      assert.equal(h.tracker.stats().evicted, 1);
      assert.equal(h.tracker.onSyn(h.syn(idle, 8000)), 'ignored', 'idle source should have been evicted');
      assert.equal(h.tracker.onSyn(h.syn(active, 9000)), 'opened');
    });

    it('still opens for a legitimate knock that keeps progressing through the flood', () => {
      const h = harness({ maxSources: cap, stepTimeoutMs: 60_000, sequenceTimeoutMs: 60_000 });
      const broker = '2001:db8:feed::7';
      const outcomes: KnockOutcome[] = [];
      let next = 0;
      for (const port of SEQUENCE) {
        outcomes.push(h.tracker.onSyn(h.syn(broker, port)));
        // Fewer spoofed sources than the cap arrive between two steps.
        for (let i = 0; i < cap - 1; i++) h.tracker.onSyn(h.syn(spoofed(next++), 7000));
      }
      assert.deepEqual(outcomes, ['progress', 'progress', 'opened']);
      assert.ok(h.tracker.stats().evicted > 0, 'the flood must have forced evictions');
      assert.ok(h.tracker.stats().tracked <= cap);
    });
  });
});

describe('KnockTracker (time-based sequence)', () => {
  const PERIOD = 30_000;
  const secret = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
  const spec: KnockSpec = { mode: 'time', secret, length: 3, rangeStart: 20000, rangeEnd: 29999, periodMs: PERIOD };
  const W = 57_000_000; // a time window number well away from zero
  const NONCE = 4242;
  const ports = (w: number, nonce = NONCE): number[] => timeSequence(spec, w, nonce);
  /** A clock inside window W, `offset` ms after its start. */
  const timeHarness = (offset = 10_000): Harness =>
    harness({ spec, stepTimeoutMs: 5000, sequenceTimeoutMs: 15_000 }, W * PERIOD + offset);

  it('opens with the sequence of the current window', () => {
    const h = timeHarness();
    assert.deepEqual(h.knock('198.51.100.7', ports(W), 200), ['progress', 'progress', 'opened']);
  });

  it('opens with the sequence of the previous or the next window (clock skew)', () => {
    assert.deepEqual(timeHarness().knock('198.51.100.7', ports(W - 1), 200), ['progress', 'progress', 'opened']);
    assert.deepEqual(timeHarness().knock('198.51.100.7', ports(W + 1), 200), ['progress', 'progress', 'opened']);
  });

  it('refuses the sequence of a window two or more away', () => {
    for (const w of [W + 2, W - 2, W + 3]) {
      const outcomes = timeHarness().knock('198.51.100.7', ports(w), 200);
      assert.ok(!outcomes.includes('opened'), `window ${w - W}: ${outcomes.join(',')}`);
    }
  });

  it('refuses a sequence whose later ports do not follow from the first port (a guess)', () => {
    const h = timeHarness();
    const right = ports(W);
    const guessed = [right[0]!, right[1]!, right[2]! === 29999 ? 20000 : right[2]! + 1];
    assert.ok(!h.knock('198.51.100.7', guessed).includes('opened'));
    const otherNonce = ports(W, NONCE + 1);
    assert.ok(!h.knock('198.51.100.8', [right[0]!, otherNonce[1]!, otherNonce[2]!]).includes('opened'), 'a tail taken from another nonce');
  });

  it('ignores a first knock outside the port range, at no memory cost', () => {
    const h = timeHarness();
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 19999)), 'ignored');
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 30000)), 'ignored');
    assert.equal(h.tracker.stats().tracked, 0);
  });

  it('refuses a completed sequence replayed within its window, from any source', () => {
    const h = timeHarness();
    assert.deepEqual(h.knock('198.51.100.7', ports(W)), ['progress', 'progress', 'opened']);
    assert.deepEqual(h.knock('198.51.100.7', ports(W)), ['progress', 'progress', 'replay']);
    h.clock.t += 1000;
    assert.deepEqual(h.knock('203.0.113.50', ports(W)), ['progress', 'progress', 'replay'], 'an eavesdropper replaying from elsewhere');
    assert.deepEqual(h.knock('2001:db8::bad', ports(W)), ['progress', 'progress', 'replay']);
    // Another window's sequence is not burnt by it.
    assert.deepEqual(h.knock('198.51.100.7', ports(W + 1)), ['progress', 'progress', 'opened']);
  });

  it('opens again in the same window for a fresh nonce (a broker that reconnects or restarts)', () => {
    const h = timeHarness();
    assert.equal(h.knock('198.51.100.7', ports(W, 1)).at(-1), 'opened');
    assert.equal(h.knock('198.51.100.7', ports(W, 2)).at(-1), 'opened');
    assert.equal(h.knock('198.51.100.7', ports(W, 1)).at(-1), 'replay');
  });

  it('keeps a burnt sequence burnt for as long as it is accepted, even across sweeps', () => {
    // Used at the very start of window W as the "next" window's sequence: acceptable until W+2 starts.
    const h = timeHarness(0);
    assert.deepEqual(h.knock('198.51.100.7', ports(W + 1)), ['progress', 'progress', 'opened']);
    h.clock.t = (W + 2) * PERIOD - 1;
    h.tracker.sweep();
    assert.deepEqual(h.knock('198.51.100.8', ports(W + 1)), ['progress', 'progress', 'replay']);
  });

  it('keeps a burnt sequence until the last start it could be offered to has timed out', () => {
    // Used at the very start of window W as the "next" window's sequence. Starts are offered
    // W+1 until W+3 begins, and such a start may complete up to a sequence timeout later.
    const h = timeHarness(0);
    assert.equal(h.knock('198.51.100.7', ports(W + 1)).at(-1), 'opened');
    const seq = ports(W + 1);
    h.clock.t = (W + 3) * PERIOD - 1;
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.8', seq[0]!)), 'progress');
    h.clock.t += 4900;
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.8', seq[1]!)), 'progress');
    h.clock.t += 4900;
    h.tracker.sweep();
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.8', seq[2]!)), 'replay', 'a replay started in the last moment W+1 was offered');
  });

  it('forgets a burnt sequence once no start can complete it, so the replay record stays bounded', () => {
    const h = timeHarness();
    assert.equal(h.knock('198.51.100.7', ports(W)).at(-1), 'opened');
    const until = (W + 2) * PERIOD + 15_000;
    h.clock.t = until - 1;
    h.tracker.sweep();
    assert.deepEqual(h.tracker.replayState(), { burnt: [{ window: W, nonce: NONCE, untilMs: until }] });
    h.clock.t = until;
    h.tracker.sweep();
    assert.deepEqual(h.tracker.replayState(), { burnt: [] });
    // Nothing the record forgot could open: from a fresh start now, W is no longer offered.
    assert.notEqual(h.knock('198.51.100.9', ports(W)).at(-1), 'opened');
  });

  it('completes a sequence across a window rollover with the candidates of its start', () => {
    // Started with the previous window's sequence 100 ms before W ends; finished in W+1,
    // where that sequence would no longer be accepted from a fresh start.
    const h = timeHarness(PERIOD - 100);
    const seq = ports(W - 1);
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', seq[0]!)), 'progress');
    h.clock.t += 150;
    assert.equal(Math.floor(h.clock.t / PERIOD), W + 1);
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', seq[1]!)), 'progress');
    h.clock.t += 150;
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', seq[2]!)), 'opened');
    assert.ok(!h.knock('198.51.100.8', ports(W - 1, NONCE + 7)).includes('opened'), 'W-1 from a fresh start in W+1');
  });

  it("accepts the new window's neighbours once the clock moves on", () => {
    const h = timeHarness();
    assert.ok(!h.knock('198.51.100.7', ports(W + 2)).includes('opened'));
    h.clock.t += PERIOD;
    assert.deepEqual(h.knock('198.51.100.7', ports(W + 2)), ['progress', 'progress', 'opened']);
  });
});

describe('KnockTracker: used sequences across a restart', () => {
  const PERIOD = 30_000;
  const SEQUENCE_MS = 15_000;
  const spec: TimeSpec = { mode: 'time', secret: Buffer.alloc(32, 7), length: 3, rangeStart: 20000, rangeEnd: 29999, periodMs: PERIOD };
  const W = 57_000_000;
  const at = (): Partial<TrackerOptions> => ({ spec, stepTimeoutMs: 5000, sequenceTimeoutMs: SEQUENCE_MS });
  const start = W * PERIOD + 10_000;

  it('refuses a knock burnt before the restart when given the saved state, and opens it without (the control)', () => {
    const before = harness(at(), start);
    assert.equal(before.knock('198.51.100.7', timeSequence(spec, W, 17)).at(-1), 'opened');
    const saved = before.tracker.replayState();
    assert.equal(saved.burnt.length, 1);
    const restarted = harness({ ...at(), replay: saved }, start + 5000);
    assert.deepEqual(restarted.knock('203.0.113.50', timeSequence(spec, W, 17)), ['progress', 'progress', 'replay']);
    const forgetful = harness(at(), start + 5000);
    assert.equal(forgetful.knock('203.0.113.50', timeSequence(spec, W, 17)).at(-1), 'opened');
    // A fresh nonce still opens after the restart.
    assert.equal(restarted.knock('198.51.100.7', timeSequence(spec, W, 18)).at(-1), 'opened');
  });

  it('drops saved entries that can no longer match when it starts', () => {
    const h = harness({ ...at(), replay: { burnt: [{ window: W - 5, nonce: 1, untilMs: (W - 3) * PERIOD + SEQUENCE_MS }, { window: W, nonce: 2, untilMs: (W + 2) * PERIOD + SEQUENCE_MS }] } }, start);
    assert.deepEqual(h.tracker.replayState().burnt.map((b) => b.nonce), [2]);
  });

  it('after a lost record refuses every window that may have been used, and opens again two windows on', () => {
    const h = harness({ ...at(), replay: lostRecordState(spec, SEQUENCE_MS, start) }, start);
    for (const w of [W - 1, W, W + 1]) assert.equal(h.knock('198.51.100.7', timeSequence(spec, w, 40)).at(-1), 'replay', `window ${w - W}`);
    // W+2 could not have been accepted before the restart (only W-1..W+1 were offered then).
    h.clock.t = (W + 1) * PERIOD + 1000;
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W + 2, 40)).at(-1), 'opened');
    h.clock.t = (W + 2) * PERIOD + 1000;
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W + 2, 41)).at(-1), 'opened');
  });

  it('opens nothing for a correct knock it cannot remember as used (record full), and opens again once room is made', () => {
    const h = harness({ ...at(), maxBurnt: 2 }, start);
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W, 1)).at(-1), 'opened');
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W, 2)).at(-1), 'opened');
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W, 3)).at(-1), 'unrecorded');
    h.clock.t = (W + 2) * PERIOD + SEQUENCE_MS;
    assert.equal(h.knock('198.51.100.7', timeSequence(spec, W + 2, 3)).at(-1), 'opened');
  });
});

describe('KnockTracker: per-source knock budget', () => {
  const budget = { attempts: 3, refillMs: 10_000 };

  it('throttles a source after its budget of failed attempts, while another source still opens', () => {
    const h = harness({ budget });
    for (let i = 0; i < 3; i++) assert.deepEqual(h.knock('198.51.100.7', [7000, 1234]), ['progress', 'reset']);
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 7000)), 'throttled');
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['throttled', 'ignored', 'ignored'], 'its correct knock while throttled');
    assert.deepEqual(h.knock('203.0.113.9', SEQUENCE), ['progress', 'progress', 'opened']);
    h.tracker.sweep();
    assert.equal(h.tracker.stats().budget.throttled, 1);
  });

  it('gives a throttled source one attempt back per refill period', () => {
    const h = harness({ budget });
    for (let i = 0; i < 3; i++) h.knock('198.51.100.7', [7000, 1234]);
    h.clock.t += 9_999;
    assert.equal(h.tracker.onSyn(h.syn('198.51.100.7', 7000)), 'throttled');
    h.clock.t += 1;
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
  });

  it('charges nothing for knocks that open: a broker knocking right is never throttled', () => {
    const h = harness({ budget });
    for (let i = 0; i < 50; i++) assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
    h.tracker.sweep();
    assert.deepEqual(h.tracker.stats().budget, { tracked: 0, throttled: 0, evicted: 0 });
  });

  it('does not cut a knock in progress: only starting an attempt costs', () => {
    const h = harness({ budget });
    h.knock('198.51.100.7', [7000, 1234]);
    h.knock('198.51.100.7', [7000, 1234]);
    // Its last attempt: the steps after the first are free.
    assert.deepEqual(h.knock('198.51.100.7', SEQUENCE), ['progress', 'progress', 'opened']);
  });

  it('charges one budget per IPv6 /64, so a host cannot spread its guesses over its prefix', () => {
    const h = harness({ budget });
    for (let i = 1; i <= 3; i++) assert.equal(h.knock(`2001:db8:0:1::${i.toString(16)}`, [7000, 1234])[0], 'progress');
    assert.equal(h.tracker.onSyn(h.syn('2001:db8:0:1:ffff::9', 7000)), 'throttled');
    assert.equal(h.tracker.onSyn(h.syn('2001:db8:0:2::1', 7000)), 'progress', 'the next /64 has its own budget');
  });
});
