import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { sequenceToSend, type TimeSpec } from '../../../services/common/knock/sequence';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import { gatewayKnockSpec, gatewayMetrics, knockUntilOpen, logEntries, metricValue, type LogEntry } from '../../support/stack/gateway-door';
import { inContainer, tcpProbe } from '../../support/stack/net-probe';
import { execIn, type Stack } from '../../support/stack/stack';
import { startWriteLoad, type WriteLoad } from '../../support/stack/write-load';
import { waitFor } from '../../support/wait';

/**
 * Rotation with overlap of the gateway's queue password and knock secret (issue 15.5), on
 * one real stack (the queue password first, then the knock secret).
 *
 * Queue password,
 * under client write load: `nonstop-keygen rotate queue-password`, run as an operator's
 * `docker compose run keygen` would, then `retire queue-password`.
 *
 *   rotate → the broker reloads gateways.json (both hashes) and the gateway its password
 *            files (log lines), and moves its Redis connections to the new password; the
 *            new password authenticates at the broker's Redis (positive evidence)
 *   retire → the broker reloads again; the old password is refused by the broker's Redis
 *            (WRONGPASS) where the new one, from the same place, is accepted
 *   load   → 0 failed requests across both steps, and more succeeded than a floor
 */
describe('queue password and knock secret rotation with overlap on a running stack', function () {
  this.timeout(900_000);

  let stack: Stack | undefined;
  let load: WriteLoad | undefined;
  const s = (): Stack => {
    if (!stack) throw new Error('no stack');
    return stack;
  };

  before(async () => {
    stack = await upStack();
    await s().waitHealthy('gateway');
    await s().waitHealthy('broker');
  });

  after(async () => {
    await load?.stop();
    await stack?.down();
  });

  async function gatewayFile(path: string): Promise<string> {
    const r = await s().exec('gateway', ['cat', path]);
    assert.equal(r.exitCode, 0, `cat ${path}: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** AUTH as the gateway's Redis user at the broker's redis-server, from inside the broker. */
  async function brokerRedisAuth(password: string): Promise<string> {
    const r = await s().exec('broker', ['redis-cli', '-h', '127.0.0.1', '-p', '6379', '--no-auth-warning', '--user', 'gateway-gw1', '--pass', password, 'PING']);
    return `${r.stdout}${r.stderr}`.trim();
  }

  const count = (logs: string, text: string): number => logs.split(text).length - 1;

  async function waitForLog(service: string, text: string, atLeast: number): Promise<void> {
    await waitFor(`${service} logs ${JSON.stringify(text)} ${atLeast} times`, async () => count(await s().logs(service), text) >= atLeast, 60_000, 500);
  }

  it('rotates and retires the queue password with 0 failed requests, the old one refused after retire', async () => {
    const api = await ApiClient.forStack(s());
    const token = await createToken(s(), ['notes']);
    const oldPassword = await gatewayFile('/var/lib/nonstop/queue.password');
    assert.equal(await brokerRedisAuth(oldPassword), 'PONG', 'before the rotation, the password in use authenticates');
    const brokerReloads = count(await s().logs('broker'), 'BROKER_GATEWAYS_FILE reloaded');

    load = startWriteLoad(api, token);
    await waitFor('the load has succeeded requests', () => load!.succeeded() > 20, 60_000, 200);

    await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'queue-password']);
    const newPassword = await gatewayFile('/var/lib/nonstop/queue.password');
    assert.notEqual(newPassword, oldPassword);
    assert.equal(await gatewayFile('/var/lib/nonstop/queue.password.previous'), oldPassword);
    await waitForLog('broker', 'BROKER_GATEWAYS_FILE reloaded', brokerReloads + 1);
    await waitForLog('gateway', 'queue password reloaded', 1);
    await waitForLog('gateway', 'queue connections moved to the current password', 1);
    // During the overlap both authenticate.
    assert.equal(await brokerRedisAuth(newPassword), 'PONG');
    assert.equal(await brokerRedisAuth(oldPassword), 'PONG');
    const duringOverlap = load.succeeded();
    await waitFor('requests succeed after the move', () => load!.succeeded() > duringOverlap + 20, 60_000, 200);

    await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'queue-password']);
    await waitForLog('broker', 'BROKER_GATEWAYS_FILE reloaded', brokerReloads + 2);
    const exists = await s().exec('gateway', ['test', '-e', '/var/lib/nonstop/queue.password.previous']);
    assert.equal(exists.exitCode, 1, '.previous is gone after retire');
    // The negative check and its positive control, from the same place.
    assert.match(await brokerRedisAuth(oldPassword), /WRONGPASS/);
    assert.equal(await brokerRedisAuth(newPassword), 'PONG');
    const afterRetire = load.succeeded();
    await waitFor('requests succeed after retire', () => load!.succeeded() > afterRetire + 20, 60_000, 200);

    await load.stop();
    console.log(`      load: ${load.summary()}`);
    assert.equal(load.failures(), 0, load.summary());
    assert.ok(load.succeeded() > 100, load.summary());
  });
  /**
   * Knock secret, under write load throughout. The broker is made to set up a new tunnel in
   * each phase without failing a request: a broker key rotation (rotate broker-key) moves its
   * tunnel to the new key make-before-break, which takes a fresh knock — so the presenting
   * side is exercised with the new secret while the old tunnel still carries the traffic.
   *
   *   rotate → the gateway reloads (log); from a probe on the edge network a knock from
   *            either secret opens the SSH port; the broker's replacement tunnel opens at its
   *            first knock, with the new secret (no fallback logged)
   *   retire → the gateway reloads; from the same probe a knock from the old secret leaves
   *            the port filtered, one from the new opens it (control); another replacement
   *            tunnel comes up with the new secret
   */
  it('rotates and retires the knock secret: both open during the overlap, only the new after retire, the broker reconnecting with the new one each time', async () => {
    const api = await ApiClient.forStack(s());
    const token = await createToken(s(), ['notes']);
    const gw = await s().ip('gateway', 'edge');
    const brokerIp = await s().ip('broker', 'edge');
    const probe = await s().probe('edge');
    const run = (c: Docker.Container, cmd: string[]) => execIn(s().docker, c, cmd, { timeoutMs: 60_000 });
    const probeIp = await s().addressOf(probe);
    /** A knock meant to open: drawn again if it happened to repeat a nonce used in its window (knockUntilOpen). */
    const knockToOpen = async (spec: TimeSpec): Promise<void> => void (await knockUntilOpen(s(), probe, spec, gw, probeIp));
    /** A knock meant to be refused: sent once. */
    const knockWith = async (spec: TimeSpec): Promise<void> => assert.equal((await run(probe, ['knock', '-d', '10', gw, ...sequenceToSend(spec, Date.now()).map(String)])).exitCode, 0);
    const sshPort = () => tcpProbe(inContainer(s().docker, probe), gw, 2222);
    const entries = (service: string): Promise<LogEntry[]> => logEntries(s(), service);
    const countOf = (list: LogEntry[], message: string, fields: Record<string, unknown> = {}): number =>
      list.filter((e) => e.message === message && Object.entries(fields).every(([k, v]) => e[k] === v)).length;
    const FALLBACK = 'knocking with the previous knock secret: the last knock with the new one did not open the SSH port';
    /** A broker key rotation and its retire: the broker's tunnel replaced make-before-break, a fresh knock for it. */
    const newTunnelUnderLoad = async (): Promise<void> => {
      const replacedBefore = countOf(await entries('broker'), 'tunnel replaced: the keys it was set up with were rotated');
      const fallbacksBefore = countOf(await entries('broker'), FALLBACK);
      const replaysBefore = metricValue(await gatewayMetrics(s()), 'nonstop_knock_syns_total', 'outcome="replay"');
      const openedBefore = countOf(await entries('gateway'), 'knock accepted; ssh window open', { src: brokerIp });
      await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'broker-key']);
      await waitFor('the broker tunnel replaced', async () => countOf(await entries('broker'), 'tunnel replaced: the keys it was set up with were rotated') > replacedBefore, 90_000, 250);
      assert.ok(countOf(await entries('gateway'), 'knock accepted; ssh window open', { src: brokerIp }) > openedBefore, "the broker's knock did not open the door");
      // Its first knock opened: it did not fall back to the previous secret. The one exception is a
      // knock whose random nonce repeated one already used in its window (about one knock in 1000 per
      // knock in the window): the gateway refuses it as a replay whatever the secret, and the broker
      // cannot tell that from a secret the gateway does not know yet. The gateway counts each.
      const fellBack = countOf(await entries('broker'), FALLBACK) - fallbacksBefore;
      const replays = metricValue(await gatewayMetrics(s()), 'nonstop_knock_syns_total', 'outcome="replay"') - replaysBefore;
      assert.ok(fellBack <= replays, `the broker fell back to the previous secret ${fellBack} time(s), and the gateway refused ${replays} knock(s) as replays: a knock with the new secret did not open`);
      const reloads = countOf(await entries('gateway'), 'authorized_keys reloaded');
      await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'broker-key']);
      await waitFor('the gateway to drop the old broker key', async () => countOf(await entries('gateway'), 'authorized_keys reloaded') > reloads, 60_000, 250);
    };

    const oldSpec = await gatewayKnockSpec(s());
    // Control before anything changes: the probe's own right knock opens the port to it.
    await knockToOpen(oldSpec);
    assert.equal(await sshPort(), 'connected');

    load = startWriteLoad(api, token);
    await waitFor('the load has succeeded requests', () => load!.succeeded() > 20, 60_000, 200);
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'knock-secret']);
    await waitForLog('gateway', 'knock secret reloaded', 1);
    const newSpec = await gatewayKnockSpec(s());
    assert.ok(!newSpec.secret.equals(oldSpec.secret), 'rotate did not change the secret');
    const brokerSecret = await s().exec('broker', ['cat', '/etc/nonstop/broker/knock-gw1.secret']);
    assert.equal(brokerSecret.stdout.trim(), newSpec.secret.toString('utf8'), "the broker's secret is not the gateway's new one");
    // During the overlap a knock from either secret opens.
    await knockToOpen(newSpec);
    assert.equal(await sshPort(), 'connected', 'a knock from the new secret did not open during the overlap');
    await knockToOpen(oldSpec);
    assert.equal(await sshPort(), 'connected', 'a knock from the old secret did not open during the overlap');
    await newTunnelUnderLoad();
    const overlap = load.succeeded();
    await waitFor('requests succeed during the overlap', () => load!.succeeded() > overlap + 20, 60_000, 200);

    await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'knock-secret']);
    await waitForLog('gateway', 'knock secret reloaded', 2);
    for (const f of ['/var/lib/nonstop/knock.secret.previous']) assert.equal((await s().exec('gateway', ['test', '-e', f])).exitCode, 1, `${f} is still there`);
    assert.equal((await s().exec('broker', ['test', '-e', '/etc/nonstop/broker/knock-gw1.secret.previous'])).exitCode, 1);
    // From the same probe: the old secret's knock leaves the port filtered, the new one's opens it.
    await knockWith(oldSpec);
    assert.equal(await sshPort(), 'timeout', 'a knock from the retired secret opened the SSH port');
    await knockToOpen(newSpec);
    assert.equal(await sshPort(), 'connected', 'a knock from the new secret did not open after retire');
    await newTunnelUnderLoad();
    const afterRetire = load.succeeded();
    await waitFor('requests succeed after retire', () => load!.succeeded() > afterRetire + 20, 60_000, 200);

    await load.stop();
    console.log(`      load: ${load.summary()}`);
    assert.equal(load.failures(), 0, load.summary());
    assert.ok(load.succeeded() > 100, load.summary());
  });
});
