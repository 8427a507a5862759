import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import type { TimeSpec } from '../../../services/common/knock/sequence';
import { fingerprintOfKey } from '../../../services/common/pki/ssh-keys';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import { gatewayKnockSpec, knockUntilOpen, logEntries, type LogEntry } from '../../support/stack/gateway-door';
import { execIn, type Stack } from '../../support/stack/stack';
import { startWriteLoad, type WriteLoad } from '../../support/stack/write-load';
import { waitFor } from '../../support/wait';

const HOST_KEY = '/var/lib/nonstop/ssh/ssh_host_ed25519_key';
const BROKER_KEY = '/etc/nonstop/broker/id_ed25519';

/**
 * Rotation with overlap of the two SSH keys (issue 15.5), on a real stack under client write
 * load, each step run as an operator's `docker compose run keygen nonstop-keygen ...` would:
 *
 *   rotate gateway-host-key → the broker reloads gateways.json (both pinned) and the gateway
 *            its key file; a new connection is shown the new key (OpenSSH's ssh-keyscan from
 *            a probe on the edge network, after a knock), the broker's tunnel is not re-made
 *   retire gateway-host-key → the broker replaces its tunnel, verified against the new key
 *            (its log), before the old one closes
 *   rotate broker-key → the gateway authorizes both, the broker moves its tunnel to the new
 *            key (the gateway logs the fingerprint that authenticated)
 *   retire broker-key → the gateway refuses the old key (OpenSSH ssh from a probe) and takes
 *            the new one from the same probe (positive control)
 *   load   → 0 failed requests across all four steps, and more succeeded than a floor
 */
describe('SSH host key and broker key rotation with overlap on a running stack', function () {
  this.timeout(900_000);

  let stack: Stack | undefined;
  let load: WriteLoad | undefined;
  let probe: Docker.Container;
  let spec: TimeSpec;
  let gw: string;
  let probeIp: string;
  const s = (): Stack => {
    if (!stack) throw new Error('no stack');
    return stack;
  };

  before(async () => {
    stack = await upStack();
    await s().waitHealthy('gateway');
    await s().waitHealthy('broker');
    probe = await s().probe('edge');
    spec = await gatewayKnockSpec(s());
    gw = await s().ip('gateway', 'edge');
    probeIp = await s().addressOf(probe);
  });

  after(async () => {
    if (load) {
      await load.stop();
      // On a failure too: what the clients saw is the first thing to look at.
      console.log(`      load at the end: ${load.summary()}`);
    }
    await stack?.down();
  });

  async function cat(service: string, path: string): Promise<string> {
    const r = await s().exec(service, ['cat', path]);
    assert.equal(r.exitCode, 0, `cat ${path} in ${service}: ${r.stderr}`);
    return r.stdout;
  }

  const inProbe = (cmd: string[], input?: Buffer) => execIn(s().docker, probe, cmd, { timeoutMs: 60_000, ...(input ? { input } : {}) });

  /** A fresh knock from the probe (as a broker computes it) that the gateway accepted, so its next connection to the SSH port is let in. */
  async function knock(): Promise<void> {
    await knockUntilOpen(s(), probe, spec, gw, probeIp);
  }

  /** The host key the gateway presents to a new connection, as OpenSSH's ssh-keyscan sees it from the edge network. */
  async function presentedHostKey(): Promise<string> {
    await knock();
    const r = await inProbe(['ssh-keyscan', '-T', '5', '-t', 'ed25519', '-p', '2222', gw]);
    const line = r.stdout.split('\n').find((l) => l.includes(' ssh-ed25519 '));
    assert.ok(line, `ssh-keyscan saw no ed25519 host key: ${r.stdout} ${r.stderr}`);
    return fingerprintOfKey(line.slice(line.indexOf('ssh-ed25519')));
  }

  /** Logs in to the gateway as the broker with `key` from the probe; the gateway's log says whether it took the key. */
  async function loginWith(key: string): Promise<string> {
    const path = `/tmp/key-${fingerprintOfKey(key).slice(7, 15).replace(/[^A-Za-z0-9]/g, '_')}`;
    const put = await inProbe(['sh', '-c', `umask 077 && cat > ${path}`], Buffer.from(key));
    assert.equal(put.exitCode, 0, put.stderr);
    await knock();
    // -N with no forward: the gateway closes a connection that asks for nothing; only authentication matters here.
    const r = await inProbe(['timeout', '10', 'ssh', '-N', '-i', path, '-p', '2222', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'PreferredAuthentications=publickey', `broker@${gw}`]);
    return r.stderr;
  }

  const entries = (service: string, message: string) => async (): Promise<LogEntry[]> => (await logEntries(s(), service)).filter((l) => l.message === message);

  async function waitForLog(service: string, message: string, atLeast: number, match: (l: LogEntry) => boolean = () => true): Promise<LogEntry[]> {
    return await waitFor(
      `${service} logs ${JSON.stringify(message)} ${atLeast} times`,
      async () => {
        const found = (await entries(service, message)()).filter(match);
        return found.length >= atLeast ? found : undefined;
      },
      90_000,
      500,
    );
  }

  it('rotates and retires the gateway host key and the broker key with 0 failed requests: new keys in use, old keys refused after retire', async () => {
    const api = await ApiClient.forStack(s());
    const token = await createToken(s(), ['notes']);
    const oldHost = fingerprintOfKey(await cat('gateway', HOST_KEY));
    assert.equal(await presentedHostKey(), oldHost, 'positive control: ssh-keyscan through the door sees the key the gateway started with');
    const oldBrokerKey = await cat('broker', BROKER_KEY);
    const tunnelsUp = (await entries('broker', 'tunnel up')()).length;
    const gatewaysReloads = (await entries('broker', 'BROKER_GATEWAYS_FILE reloaded')()).length;

    load = startWriteLoad(api, token);
    await waitFor('the load has succeeded requests', () => load!.succeeded() > 20, 60_000, 200);

    // --- gateway host key: rotate
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'gateway-host-key']);
    const newHost = fingerprintOfKey(await cat('gateway', HOST_KEY));
    assert.notEqual(newHost, oldHost);
    assert.equal(fingerprintOfKey(await cat('gateway', `${HOST_KEY}.previous`)), oldHost);
    await waitForLog('broker', 'BROKER_GATEWAYS_FILE reloaded', gatewaysReloads + 1);
    await waitForLog('gateway', 'ssh host key reloaded: new connections get it', 1, (l) => l.fingerprint === newHost);
    assert.equal(await presentedHostKey(), newHost, 'a new connection is shown the new host key');
    assert.equal((await entries('broker', 'tunnel up')()).length, tunnelsUp, 'the broker kept its tunnel, verified against the old key, which is still pinned');
    const afterHostRotate = load.succeeded();
    await waitFor('requests succeed during the host key overlap', () => load!.succeeded() > afterHostRotate + 20, 60_000, 200);

    // --- gateway host key: retire
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'gateway-host-key']);
    assert.equal((await s().exec('gateway', ['test', '-e', `${HOST_KEY}.previous`])).exitCode, 1, '.previous is gone after retire');
    await waitForLog('broker', 'tunnel replaced: the keys it was set up with were rotated', 1, (l) => l.hostKey === newHost);
    const upOnNew = await waitForLog('broker', 'tunnel up', 1, (l) => l.hostKey === newHost);
    assert.ok(upOnNew.length >= 1);
    // The broker pins the new key alone: the old one would be refused.
    const pinned = JSON.parse(await cat('broker', '/etc/nonstop/broker/gateways.json')) as { gateways: { hostKeyFingerprint: unknown }[] };
    assert.deepEqual(pinned.gateways.map((g) => g.hostKeyFingerprint), [newHost]);
    const afterHostRetire = load.succeeded();
    await waitFor('requests succeed after the host key retire', () => load!.succeeded() > afterHostRetire + 20, 60_000, 200);

    // --- broker key: rotate
    const replacedBefore = (await entries('broker', 'tunnel replaced: the keys it was set up with were rotated')()).length;
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'broker-key']);
    const newBrokerKey = await cat('broker', BROKER_KEY);
    assert.notEqual(fingerprintOfKey(newBrokerKey), fingerprintOfKey(oldBrokerKey));
    assert.equal(await cat('broker', `${BROKER_KEY}.previous`), oldBrokerKey);
    await waitForLog('broker', 'ssh keys reloaded', 1);
    await waitForLog('broker', 'tunnel replaced: the keys it was set up with were rotated', replacedBefore + 1);
    const onNewKey = await waitForLog('gateway', 'broker authenticated', 1, (l) => l.fingerprint === fingerprintOfKey(newBrokerKey));
    assert.ok(onNewKey.length >= 1, 'the gateway saw the broker authenticate with its new key');
    const afterKeyRotate = load.succeeded();
    await waitFor('requests succeed during the broker key overlap', () => load!.succeeded() > afterKeyRotate + 20, 60_000, 200);

    // --- broker key: retire
    const authorizedReloads = (await entries('gateway', 'authorized_keys reloaded')()).length;
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'broker-key']);
    assert.equal((await s().exec('broker', ['test', '-e', `${BROKER_KEY}.previous`])).exitCode, 1, '.previous is gone after retire');
    await waitForLog('gateway', 'authorized_keys reloaded', authorizedReloads + 1);
    // The negative check and its positive control, from the same probe through the same door.
    const oldLogin = await loginWith(oldBrokerKey);
    const gatewaySaw = async (): Promise<string> => JSON.stringify((await logEntries(s(), 'gateway')).filter((l) => l.src === probeIp).slice(-4));
    assert.match(oldLogin, /Permission denied \(publickey\)/, `the old broker key after retire: expected a publickey refusal; ssh said ${JSON.stringify(oldLogin)}; the gateway's last lines for the probe: ${await gatewaySaw()}`);
    const newLogin = await loginWith(newBrokerKey);
    assert.doesNotMatch(newLogin, /Permission denied/, 'positive control: the new key from the same probe');
    await waitForLog('gateway', 'broker authenticated', 1, (l) => l.src === probeIp && l.fingerprint === fingerprintOfKey(newBrokerKey));
    const afterKeyRetire = load.succeeded();
    await waitFor('requests succeed after the broker key retire', () => load!.succeeded() > afterKeyRetire + 20, 60_000, 200);

    await load.stop();
    console.log(`      load: ${load.summary()}`);
    assert.equal(load.failures(), 0, load.summary());
    assert.ok(load.succeeded() > 200, load.summary());
  });
});
