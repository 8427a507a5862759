import assert from 'node:assert/strict';
import { bodyDeadlineMiddleware } from '../../../../services/gateway/http/body-deadline';

/** The deadline's own checks; what it does to a slow body is in test/integration/gateway/http/body-deadline.test.ts. */
describe('bodyDeadlineMiddleware', () => {
  it('refuses a deadline that is not a positive integer', () => {
    for (const ms of [0, -1, 1.5, Number.NaN]) assert.throws(() => bodyDeadlineMiddleware(ms), RangeError);
    assert.equal(typeof bodyDeadlineMiddleware(1), 'function');
  });
});
