import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

/** BODY_TIMEOUT_MS, the total time a request body may take to arrive, as the gateway reads it. */
describe('loadGatewayConfig: body deadline', () => {
  const base = minimalGatewayEnv();

  it('defaults to 20 s and takes BODY_TIMEOUT_MS', () => {
    assert.equal(loadGatewayConfig(base()).http.bodyTimeoutMs, 20_000);
    assert.equal(loadGatewayConfig({ ...base(), BODY_TIMEOUT_MS: '5000' }).http.bodyTimeoutMs, 5000);
  });

  it('names the variable on one line for a value that is not an integer from 1 s to 120 s (below Node’s own 300 s)', () => {
    for (const value of ['999', '120001', '20s', '-1']) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), BODY_TIMEOUT_MS: value }));
      assert.equal(err.problems.length, 1, err.message);
      assert.match(err.message, new RegExp(`^BODY_TIMEOUT_MS=${JSON.stringify(value)}: expected an integer from 1000 to 120000$`));
    }
    assert.equal(loadGatewayConfig({ ...base(), BODY_TIMEOUT_MS: '120000' }).http.bodyTimeoutMs, 120_000);
  });
});
