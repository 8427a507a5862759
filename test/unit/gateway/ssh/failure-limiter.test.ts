import assert from 'node:assert/strict';
import { FailureLimiter } from '../../../../services/gateway/ssh/failure-limiter';

describe('FailureLimiter', () => {
  const setup = (maxTracked = 100): { limiter: FailureLimiter; clock: { t: number } } => {
    const clock = { t: 9_000_000 };
    return { limiter: new FailureLimiter({ maxFailures: 3, windowMs: 60_000, maxTracked }, () => clock.t), clock };
  };

  it('blocks an address after maxFailures failures within the window', () => {
    const { limiter, clock } = setup();
    limiter.recordFailure('198.51.100.7');
    clock.t += 1000;
    limiter.recordFailure('198.51.100.7');
    assert.equal(limiter.isBlocked('198.51.100.7'), false);
    clock.t += 1000;
    limiter.recordFailure('198.51.100.7');
    assert.equal(limiter.isBlocked('198.51.100.7'), true);
  });

  it('blocks per address: other addresses are unaffected', () => {
    const { limiter } = setup();
    for (let i = 0; i < 3; i++) limiter.recordFailure('2001:db8::bad');
    assert.equal(limiter.isBlocked('2001:db8::bad'), true);
    assert.equal(limiter.isBlocked('2001:db8::good'), false);
    assert.equal(limiter.isBlocked('198.51.100.7'), false);
  });

  it('unblocks once the failures fall out of the window', () => {
    const { limiter, clock } = setup();
    for (let i = 0; i < 3; i++) limiter.recordFailure('198.51.100.7');
    clock.t += 59_999;
    assert.equal(limiter.isBlocked('198.51.100.7'), true);
    clock.t += 1;
    assert.equal(limiter.isBlocked('198.51.100.7'), false);
  });

  it('does not block failures spread wider than the window', () => {
    const { limiter, clock } = setup();
    for (let i = 0; i < 10; i++) {
      limiter.recordFailure('198.51.100.7');
      assert.equal(limiter.isBlocked('198.51.100.7'), false, `failure ${i + 1}`);
      clock.t += 30_001;
    }
  });

  it('keeps a blocked address blocked while it keeps failing', () => {
    const { limiter, clock } = setup();
    for (let i = 0; i < 3; i++) limiter.recordFailure('198.51.100.7');
    for (let i = 0; i < 5; i++) {
      clock.t += 40_000;
      limiter.recordFailure('198.51.100.7');
      limiter.recordFailure('198.51.100.7');
      assert.equal(limiter.isBlocked('198.51.100.7'), true);
    }
  });

  it('bounds tracking, evicting the least recently failed address first', () => {
    const { limiter } = setup(2);
    for (let i = 0; i < 3; i++) limiter.recordFailure('10.0.0.1');
    limiter.recordFailure('10.0.0.2');
    limiter.recordFailure('10.0.0.1'); // 10.0.0.1 is now the most recent
    limiter.recordFailure('10.0.0.3'); // evicts 10.0.0.2
    assert.equal(limiter.isBlocked('10.0.0.1'), true);
    limiter.recordFailure('10.0.0.2');
    limiter.recordFailure('10.0.0.2');
    // Had 10.0.0.2 kept its first failure, this third one would block it.
    assert.equal(limiter.isBlocked('10.0.0.2'), false);
  });

  it('forgets the oldest addresses under a flood of failing sources', () => {
    const { limiter } = setup(100);
    for (let i = 0; i < 3; i++) limiter.recordFailure('198.51.100.7');
    for (let i = 0; i < 10_000; i++) limiter.recordFailure(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(limiter.isBlocked('198.51.100.7'), false);
    const last = 9_999;
    const addr = `10.${last >> 16}.${(last >> 8) & 255}.${last & 255}`;
    limiter.recordFailure(addr);
    limiter.recordFailure(addr);
    assert.equal(limiter.isBlocked(addr), true, 'recent addresses are still tracked');
  });
});
