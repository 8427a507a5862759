import assert from 'node:assert/strict';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { minimalGatewayEnv } from '../../support/gateway-env';
import { expectConfigError } from '../../support/config-error';

/** SSH_MAX_STARTUPS and SSH_MAX_STARTUPS_PER_SOURCE as the gateway's configuration reads them. */
describe('loadGatewayConfig: unauthenticated SSH slots', () => {
  const base = minimalGatewayEnv();

  it('defaults to 16 in all and 4 from one address, under 64 connections', () => {
    const { ssh } = loadGatewayConfig(base());
    assert.deepEqual([ssh.maxStartups, ssh.maxStartupsPerSource, ssh.maxConnections], [16, 4, 64]);
    const set = loadGatewayConfig({ ...base(), SSH_MAX_STARTUPS: '8', SSH_MAX_STARTUPS_PER_SOURCE: '1' }).ssh;
    assert.deepEqual([set.maxStartups, set.maxStartupsPerSource], [8, 1]);
  });

  it('refuses as many unauthenticated slots as connections, with one line naming both variables', () => {
    const err = expectConfigError(() => loadGatewayConfig({ ...base(), SSH_MAX_STARTUPS: '64' }));
    assert.equal(err.problems.length, 1, err.message);
    assert.match(err.problems[0]!, /^SSH_MAX_STARTUPS=64: must be below SSH_MAX_CONNECTIONS \(64\)/);
    assert.equal(loadGatewayConfig({ ...base(), SSH_MAX_STARTUPS: '64', SSH_MAX_CONNECTIONS: '65' }).ssh.maxStartups, 64);
  });
});
