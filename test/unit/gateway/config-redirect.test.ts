import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

/** TLS_NAMES and PUBLIC_HTTPS_PORT: what plain HTTP's redirect may point to. */
describe('loadGatewayConfig: the names and port plain HTTP redirects to', () => {
  const base = minimalGatewayEnv();

  it('redirects to HTTPS_PORT unless PUBLIC_HTTPS_PORT names the port clients reach', () => {
    assert.equal(loadGatewayConfig(base()).http.publicHttpsPort, 443);
    assert.equal(loadGatewayConfig({ ...base(), HTTPS_PORT: '8443' }).http.publicHttpsPort, 8443);
    assert.equal(loadGatewayConfig({ ...base(), HTTPS_PORT: '443', PUBLIC_HTTPS_PORT: '9443' }).http.publicHttpsPort, 9443);
    const err = expectConfigError(() => loadGatewayConfig({ ...base(), PUBLIC_HTTPS_PORT: '0' }));
    assert.match(err.problems[0]!, /^PUBLIC_HTTPS_PORT=/);
  });

  it('takes DNS names and IP addresses as TLS_NAMES and refuses a wildcard or anything nginx would read as syntax', () => {
    assert.deepEqual(loadGatewayConfig({ ...base(), TLS_NAMES: 'api.example.com, 192.0.2.1,::1' }).http.tlsNames, ['api.example.com', '192.0.2.1', '::1']);
    for (const bad of ['*.example.com', 'evil.example;return', 'a b']) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), TLS_NAMES: `localhost,${bad}` }));
      assert.equal(err.problems.length, 1, err.message);
      assert.match(err.problems[0]!, /^TLS_NAMES=.*no wildcard/, bad);
    }
  });
});
