import assert from 'node:assert/strict';
import { ConfigError } from '../../services/common/errors/config-error';

/** Runs `fn`, asserts it throws a ConfigError, and returns that error for further checks. */
export function expectConfigError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}
