import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deadline, DeadlineExceeded, isDeadlineExceeded } from '../../../../services/core/storage/deadline';

describe('Deadline', () => {
  it('gives each operation the abort signal and a maxTimeMS no larger than the budget', () => {
    const deadline = new Deadline(5000);
    try {
      const limits = deadline.operation();
      assert.equal(limits.signal, deadline.signal);
      assert.equal(limits.signal.aborted, false);
      assert.ok(Number.isInteger(limits.maxTimeMS) && limits.maxTimeMS >= 1 && limits.maxTimeMS <= 5000, String(limits.maxTimeMS));
    } finally {
      deadline.dispose();
    }
  });

  it('aborts its signal with DeadlineExceeded once the budget has passed, and refuses further operations', async () => {
    const deadline = new Deadline(20);
    await sleep(60);
    assert.equal(deadline.signal.aborted, true);
    assert.ok(isDeadlineExceeded(deadline.signal.reason));
    assert.equal(deadline.remainingMs(), 0);
    assert.throws(() => deadline.operation(), DeadlineExceeded);
  });

  it('never aborts once disposed', async () => {
    const deadline = new Deadline(20);
    deadline.dispose();
    await sleep(60);
    assert.equal(deadline.signal.aborted, false);
  });

  it('tells its own reason from other errors', () => {
    assert.equal(isDeadlineExceeded(new DeadlineExceeded(5)), true);
    assert.equal(isDeadlineExceeded(new Error('timed out')), false);
    assert.equal(isDeadlineExceeded(new DOMException('aborted', 'AbortError')), false);
  });
});
