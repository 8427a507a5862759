import assert from 'node:assert/strict';
import { backoffDelay } from '../../../services/common/lifecycle/backoff';

describe('backoffDelay', () => {
  const policy = { baseMs: 100, capMs: 2000, minMs: 10 };

  it('grows the ceiling exponentially and caps it', () => {
    const top = (attempt: number): number => backoffDelay(policy, attempt, () => 0.999999);
    assert.equal(top(0), 99);
    assert.equal(top(1), 199);
    assert.equal(top(3), 799);
    assert.equal(top(10), 1999);
    assert.equal(top(1000), 1999);
  });

  it('never waits less than the floor, even with jitter at zero', () => {
    assert.equal(backoffDelay(policy, 5, () => 0), 10);
  });
});
