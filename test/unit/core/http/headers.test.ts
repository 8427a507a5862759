import assert from 'node:assert/strict';
import { ApiError } from '../../../../services/common/errors/api-error';
import { idempotencyKey, requestBudgetMs } from '../../../../services/core/http/headers';

const badRequest = (err: unknown): boolean => err instanceof ApiError && err.status === 400 && err.code === 'bad_request';

describe('core requestBudgetMs (x-request-budget-ms)', () => {
  it('reads integers from 1 to 600000', () => {
    assert.equal(requestBudgetMs('1', 10_000), 1);
    assert.equal(requestBudgetMs('300', 10_000), 300);
    assert.equal(requestBudgetMs('600000', 10_000), 600_000);
    assert.equal(requestBudgetMs('000250', 10_000), 250);
  });

  it("uses core's default when the header is absent", () => {
    assert.equal(requestBudgetMs(undefined, 10_000), 10_000);
    assert.equal(requestBudgetMs(undefined, 42), 42);
  });

  it('refuses anything else with 400 bad_request instead of guessing', () => {
    for (const bad of ['', '0', '600001', '1000000', '-5', '+5', '1.5', '1e3', '0x10', 'abc', '5, 6', ' 5', '5 ', 'Infinity', 'NaN', '١٢٣']) {
      assert.throws(() => requestBudgetMs(bad, 10_000), badRequest, JSON.stringify(bad));
    }
  });
});

describe('core idempotencyKey (idempotency-key from the broker)', () => {
  it('passes 1-128 printable ASCII characters through unchanged', () => {
    assert.equal(idempotencyKey('a'), 'a');
    assert.equal(idempotencyKey('order-42/retry:{x}~'), 'order-42/retry:{x}~');
    assert.equal(idempotencyKey('k'.repeat(128)), 'k'.repeat(128));
  });

  it('is undefined when the header is absent', () => {
    assert.equal(idempotencyKey(undefined), undefined);
  });

  it('refuses empty, long, spaced or non-ASCII keys with 400 bad_request', () => {
    for (const bad of ['', 'k'.repeat(129), 'with space', 'tab\there', 'nul\0', 'é', 'a\nb']) {
      assert.throws(() => idempotencyKey(bad), badRequest, JSON.stringify(bad));
    }
  });
});
