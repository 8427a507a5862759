import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { renderNginxConf, type NginxOptions } from '../../../services/gateway/nginx/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

const nginxOptions: NginxOptions = {
  runDir: '/run/nonstop/nginx',
  accessLog: '/dev/stdout',
  httpPort: 8080,
  httpsPort: 8443,
  serverNames: ['api.example.com'],
  publicHttpsPort: 8443,
  ipv6: true,
  appPort: 3000,
  certFile: '/run/secrets/tls.crt',
  keyFile: '/run/secrets/tls.key',
  maxBodyBytes: 1_048_576,
  ratePerSecond: 20,
  rateBurst: 40,
  connectionsPerAddress: 16,
  requestTimeoutMs: 10_500,
};

const listens = (conf: string): string[] => [...conf.matchAll(/^\s*listen ([^;]*);/gm)].map((m) => m[1]!);

/**
 * LISTEN_ADDRESS: with host networking (the chart's gateway DaemonSet) the gateway shares the
 * node's interfaces, and its public ports must be on the edge address only.
 */
describe('gateway LISTEN_ADDRESS', () => {
  const base = minimalGatewayEnv();

  it('listens on every address unless LISTEN_ADDRESS names one', () => {
    assert.equal(loadGatewayConfig(base()).http.listenAddress, undefined);
    assert.equal(loadGatewayConfig({ ...base(), LISTEN_ADDRESS: '192.0.2.7' }).http.listenAddress, '192.0.2.7');
    assert.equal(loadGatewayConfig({ ...base(), LISTEN_ADDRESS: '2001:db8::7' }).http.listenAddress, '2001:db8::7');
  });

  it('refuses what is not an IP address', () => {
    for (const bad of ['gateway.example', '999.1.1.1', '::g', 'a']) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), LISTEN_ADDRESS: bad }));
      assert.match(err.problems[0]!, /^LISTEN_ADDRESS=/, bad);
    }
  });

  it('binds nginx to that address alone, IPv6 in brackets, and to every address without it', () => {
    const all = listens(renderNginxConf(nginxOptions));
    assert.ok(all.includes('8443 ssl') && all.includes('[::]:8443 ssl'), all.join(' | '));
    const v4 = listens(renderNginxConf({ ...nginxOptions, listenAddress: '192.0.2.7' }));
    assert.ok(v4.length > 0);
    for (const l of v4) assert.match(l, /^192\.0\.2\.7:(8080|8443)\b/);
    assert.ok(v4.includes('192.0.2.7:8443 ssl'), v4.join(' | '));
    const v6 = listens(renderNginxConf({ ...nginxOptions, listenAddress: '2001:db8::7' }));
    for (const l of v6) assert.match(l, /^\[2001:db8::7\]:(8080|8443)\b/);
  });
});
