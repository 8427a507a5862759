import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

/** FIREWALL_SCOPE as the gateway's configuration reads it. */
describe('loadGatewayConfig: firewall scope', () => {
  const base = minimalGatewayEnv();

  it('governs the whole namespace by default and only its own ports with FIREWALL_SCOPE=ports', () => {
    assert.equal(loadGatewayConfig(base()).firewallScope, 'namespace');
    assert.equal(loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'namespace' }).firewallScope, 'namespace');
    assert.equal(loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'ports' }).firewallScope, 'ports');
  });

  it('refuses an unknown scope with one line naming the variable and the accepted values', () => {
    for (const value of ['host', 'PORTS', 'off']) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), FIREWALL_SCOPE: value }));
      assert.equal(err.problems.length, 1, err.message);
      assert.ok(!err.message.includes('\n'));
      assert.equal(err.problems[0], `FIREWALL_SCOPE=${JSON.stringify(value)}: expected one of namespace, ports`);
    }
  });

  it('refuses metrics beyond loopback in ports scope unless METRICS_ALLOW_CIDRS says who may scrape them', () => {
    const err = expectConfigError(() => loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'ports', METRICS_HOST: '0.0.0.0' }));
    assert.equal(err.problems.length, 1, err.message);
    assert.match(err.problems[0]!, /^METRICS_HOST="0\.0\.0\.0": beyond loopback with FIREWALL_SCOPE=ports, METRICS_ALLOW_CIDRS must/);
    // Positive controls: each condition alone is fine.
    assert.deepEqual(loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'ports', METRICS_HOST: '0.0.0.0', METRICS_ALLOW_CIDRS: '10.0.0.0/8' }).metrics.allowCidrs, ['10.0.0.0/8']);
    assert.equal(loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'namespace', METRICS_HOST: '0.0.0.0' }).metrics.host, '0.0.0.0');
    for (const host of ['127.0.0.1', '127.0.0.53', '::1', 'localhost']) {
      assert.equal(loadGatewayConfig({ ...base(), FIREWALL_SCOPE: 'ports', METRICS_HOST: host }).metrics.host, host);
    }
  });
});
