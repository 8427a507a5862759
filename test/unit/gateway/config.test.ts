import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

/** The gateway's admission limits as its configuration reads them. */
describe('loadGatewayConfig: admission limits', () => {
  const base = minimalGatewayEnv();

  it('defaults to 128 pending requests and 8 MiB of pending bodies', () => {
    assert.deepEqual(loadGatewayConfig(base()).http.admission, { maxPendingRequests: 128, maxPendingBytes: 8 * 1024 * 1024 });
  });

  it('takes both from MAX_PENDING_REQUESTS and MAX_PENDING_BYTES', () => {
    const config = loadGatewayConfig({ ...base(), MAX_PENDING_REQUESTS: '64', MAX_PENDING_BYTES: '4194304' });
    assert.deepEqual(config.http.admission, { maxPendingRequests: 64, maxPendingBytes: 4_194_304 });
  });

  it('names the variable on one line when a value is not an integer in range (requests at most what nginx passes on, less a margin)', () => {
    for (const [name, value] of [
      ['MAX_PENDING_REQUESTS', '0'],
      ['MAX_PENDING_REQUESTS', 'many'],
      ['MAX_PENDING_REQUESTS', '193'],
      ['MAX_PENDING_BYTES', '-5'],
      ['MAX_PENDING_BYTES', '16MiB'],
    ] as const) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), [name]: value }));
      assert.equal(err.problems.length, 1, err.message);
      assert.ok(!err.message.includes('\n'));
      assert.match(err.message, new RegExp(`^${name}=${JSON.stringify(value)}: expected an integer`));
    }
  });

  it('refuses MAX_BODY_BYTES above half the queue envelope (1 MiB), where a body would not fit once encoded, and takes 1 MiB', () => {
    const err = expectConfigError(() => loadGatewayConfig({ ...base(), MAX_BODY_BYTES: '1048577' }));
    assert.equal(err.problems.length, 1, err.message);
    assert.match(err.message, /^MAX_BODY_BYTES="1048577": /);
    assert.equal(loadGatewayConfig({ ...base(), MAX_BODY_BYTES: '1048576' }).http.limits.maxBytes, 1_048_576);
  });

  it('refuses MAX_PENDING_BYTES below MAX_BODY_BYTES: a largest body could never be admitted', () => {
    const err = expectConfigError(() => loadGatewayConfig({ ...base(), MAX_BODY_BYTES: '1048576', MAX_PENDING_BYTES: '1048575' }));
    assert.equal(err.problems.length, 1, err.message);
    assert.match(err.message, /^MAX_PENDING_BYTES=1048575: below MAX_BODY_BYTES \(1048576\)/);
    assert.equal(loadGatewayConfig({ ...base(), MAX_BODY_BYTES: '1048576', MAX_PENDING_BYTES: '1048576' }).http.admission.maxPendingBytes, 1_048_576);
  });
});
