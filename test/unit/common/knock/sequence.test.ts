import assert from 'node:assert/strict';
import {
  derivePorts,
  isFirstPort,
  sequenceToSend,
  staticSequenceProblem,
  timeCandidates,
  timeSequence,
  windowOf,
  type KnockSpec,
  type TimeSpec,
} from '../../../../services/common/knock/sequence';

const secret = Buffer.from('a knock secret of reasonable length');
const timeSpec: TimeSpec = { mode: 'time', secret, length: 4, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 };

describe('derivePorts', () => {
  it('gives the same ports for the same secret and window', () => {
    assert.deepEqual(derivePorts(secret, 123, 0, 4, 40000, 40999), derivePorts(secret, 123, 0, 4, 40000, 40999));
  });

  it('gives distinct ports within the range, as many as asked', () => {
    for (let w = 0; w < 200; w++) {
      for (const length of [2, 4, 8]) {
        const ports = derivePorts(secret, w, 0, length, 40000, 40999);
        assert.equal(ports.length, length);
        assert.equal(new Set(ports).size, length, `duplicates in ${ports.join(',')}`);
        for (const p of ports) assert.ok(p >= 40000 && p <= 40999 && Number.isInteger(p), String(p));
      }
    }
  });

  it('fills a range exactly twice the length without repeats', () => {
    const ports = derivePorts(secret, 9, 0, 8, 100, 115);
    assert.equal(new Set(ports).size, 8);
    for (const p of ports) assert.ok(p >= 100 && p <= 115);
  });

  it('differs across windows and across secrets', () => {
    const a = derivePorts(secret, 1000, 0, 4, 40000, 40999);
    assert.notDeepEqual(derivePorts(secret, 1001, 0, 4, 40000, 40999), a);
    assert.notDeepEqual(derivePorts(secret, 999, 0, 4, 40000, 40999), a);
    assert.notDeepEqual(derivePorts(Buffer.from('another secret'), 1000, 0, 4, 40000, 40999), a);
  });

  it('gives windows mostly different sequences over many windows', () => {
    const seen = new Set<string>();
    for (let w = 0; w < 1000; w++) seen.add(derivePorts(secret, w, 0, 4, 40000, 40999).join(','));
    assert.equal(seen.size, 1000);
  });

  it('refuses a range smaller than twice the length', () => {
    assert.throws(() => derivePorts(secret, 1, 0, 4, 40000, 40006), RangeError);
    assert.throws(() => derivePorts(secret, 1, 0, 2, 5000, 4000), RangeError);
    assert.equal(derivePorts(secret, 1, 0, 4, 40000, 40007).length, 4);
  });

  it('spreads draws evenly over the range', () => {
    const deciles = new Array<number>(10).fill(0);
    let total = 0;
    for (let w = 0; total < 20_000; w++) {
      for (const p of derivePorts(secret, w, 0, 4, 40000, 40999)) {
        deciles[Math.floor((p - 40000) / 100)]!++;
        total++;
      }
    }
    for (const [i, n] of deciles.entries()) {
      const share = n / total;
      assert.ok(share > 0.05 && share < 0.15, `decile ${i} got ${(share * 100).toFixed(1)}%`);
    }
  });

  it('does not favour low ports when the range size does not divide 65536', () => {
    // 40000 ports: a plain modulo of 16-bit draws would give the lower 25536 ports twice the chance.
    const halves = [0, 0];
    let total = 0;
    for (let w = 0; total < 20_000; w++) {
      for (const p of derivePorts(secret, w, 0, 4, 20000, 59999)) {
        halves[p < 40000 ? 0 : 1]!++;
        total++;
      }
    }
    for (const n of halves) assert.ok(n / total > 0.45 && n / total < 0.55, `half got ${n / total}`);
  });
});

describe('windowOf', () => {
  it('numbers windows by period since the epoch', () => {
    assert.equal(windowOf({ periodMs: 30_000 }, 0), 0);
    assert.equal(windowOf({ periodMs: 30_000 }, 29_999), 0);
    assert.equal(windowOf({ periodMs: 30_000 }, 30_000), 1);
  });
});

describe('derivePorts with a nonce', () => {
  it('differs across nonces of the same window', () => {
    const seen = new Set<string>();
    for (let nonce = 0; nonce < 500; nonce++) seen.add(derivePorts(secret, 7, nonce, 3, 40000, 40999).join(','));
    assert.equal(seen.size, 500);
  });

  it('never draws an excluded port', () => {
    for (let w = 0; w < 300; w++) {
      const ports = derivePorts(secret, w, 5, 5, 100, 115, [100, 101, 102]);
      for (const p of ports) assert.ok(p > 102, String(p));
    }
  });
});

describe('timeSequence', () => {
  it('starts with the nonce as a port of the range and follows with distinct derived ports', () => {
    for (let nonce = 0; nonce < 1000; nonce += 37) {
      const ports = timeSequence(timeSpec, 55, nonce);
      assert.equal(ports.length, 4);
      assert.equal(ports[0], 40000 + nonce);
      assert.equal(new Set(ports).size, 4);
      assert.deepEqual(ports.slice(1), derivePorts(secret, 55, nonce, 3, 40000, 40999, [40000 + nonce]));
    }
  });
});

describe('timeCandidates', () => {
  it('accepts the previous, current and next windows for the nonce of the first port, each with its replay key', () => {
    const now = 1_700_000_012_345;
    const n = windowOf(timeSpec, now);
    const got = timeCandidates(timeSpec, 40123, now);
    assert.deepEqual(got.map((c) => c.replay), [n - 1, n, n + 1].map((window) => ({ window, nonce: 123 })));
    assert.deepEqual(got[1]!.ports, timeSequence(timeSpec, n, 123));
    for (const c of got) assert.equal(c.ports[0], 40123);
  });

  it('accepts the same candidates anywhere within one window', () => {
    const start = 1000 * timeSpec.periodMs;
    assert.deepEqual(timeCandidates(timeSpec, 40001, start), timeCandidates(timeSpec, 40001, start + timeSpec.periodMs - 1));
    assert.notDeepEqual(timeCandidates(timeSpec, 40001, start), timeCandidates(timeSpec, 40001, start + timeSpec.periodMs));
  });
});

describe('isFirstPort', () => {
  it('is the first static port only, or any port of the time-based range', () => {
    const spec: KnockSpec = { mode: 'static', ports: [7000, 8000, 9000] };
    assert.equal(isFirstPort(spec, 7000), true);
    assert.equal(isFirstPort(spec, 8000), false);
    assert.equal(isFirstPort(timeSpec, 40000), true);
    assert.equal(isFirstPort(timeSpec, 40999), true);
    assert.equal(isFirstPort(timeSpec, 39999), false);
    assert.equal(isFirstPort(timeSpec, 41000), false);
  });
});

describe('sequenceToSend', () => {
  it('sends the current window with the given nonce for a time-based spec', () => {
    const now = 77 * timeSpec.periodMs + 5;
    assert.deepEqual(sequenceToSend(timeSpec, now, 9), timeSequence(timeSpec, 77, 9));
  });

  it('draws a fresh nonce when none is given, so two sends differ', () => {
    const now = Date.now();
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(sequenceToSend(timeSpec, now).join(','));
    assert.ok(seen.size > 15, `only ${seen.size} distinct sequences in 20 sends`);
  });

  it('sends a copy of the static list', () => {
    const ports = [7000, 8000, 7000];
    const spec: KnockSpec = { mode: 'static', ports };
    const got = sequenceToSend(spec, 5);
    assert.deepEqual(got, ports);
    got.push(1);
    assert.deepEqual(spec.ports, [7000, 8000, 7000]);
  });
});

describe('staticSequenceProblem', () => {
  it('accepts sequences of two or more ports without consecutive repeats', () => {
    assert.equal(staticSequenceProblem([7000, 8000]), undefined);
    assert.equal(staticSequenceProblem([7000, 8000, 7000]), undefined);
  });

  it('refuses sequences shorter than two ports', () => {
    assert.equal(staticSequenceProblem([]), 'expected at least 2 ports');
    assert.equal(staticSequenceProblem([7000]), 'expected at least 2 ports');
  });

  it('refuses a port that repeats the previous step, naming the step', () => {
    assert.equal(staticSequenceProblem([7000, 8000, 8000]), 'port 8000 repeats at step 3');
    assert.equal(staticSequenceProblem([7000, 7000]), 'port 7000 repeats at step 2');
  });
});
