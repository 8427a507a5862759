import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { timeCandidates, type TimeSpec } from '../../../services/common/knock/sequence';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import { gatewayKnockSpec, gatewayMetrics, knockUntilOpen, logEntries, metricValue, type LogEntry } from '../../support/stack/gateway-door';
import { hostVeth, killConnections, SynShaper, SynTap } from '../../support/stack/host-net';
import { inContainer, tcpProbe } from '../../support/stack/net-probe';
import { execIn, type Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

/**
 * The broker's time-based knock copied by an eavesdropper, with the demo's default
 * settings. The attacker taps the wire on the broker's side (tcpdump on the host end of
 * the broker's veth: every SYN the broker sends, as it leaves) and, from another address
 * on the edge network, sends each knock SYN it sees to the same port at once, in the same
 * order (knockd's `knock`, one port per SYN seen). First right after the broker's own
 * knock; then ahead of it, with the broker's connection-opening SYNs held back on their
 * way into the gateway so that the copy completes first. The broker's knock is made to
 * happen by resetting its tunnel's TCP connection (`ss -K`), as a middlebox would.
 *
 * What must hold: the copy never gives the copier a usable session, and the broker's
 * tunnel comes back and carries a record.
 */
describe("the broker's knock copied from another address on the edge network", function () {
  this.timeout(600_000);
  let stack: Stack;
  let gw: string;
  let brokerIp: string;
  let spec: TimeSpec;
  let api: ApiClient;
  let token: string;
  const cleanups: (() => unknown)[] = [];

  const run = (c: Docker.Container, cmd: string[], timeoutMs = 60_000) => execIn(stack.docker, c, cmd, { timeoutMs });
  const addressOf = (c: Docker.Container): Promise<string> => stack.addressOf(c);
  const count = (entries: LogEntry[], message: string, fields: Record<string, unknown> = {}): number =>
    entries.filter((e) => e.message === message && Object.entries(fields).every(([k, v]) => e[k] === v)).length;
  const sshPort = (c: Docker.Container) => tcpProbe(inContainer(stack.docker, c), gw, 2222);

  /** Resets the tunnel's TCP connection at both ends; the broker then knocks again. */
  const cutTunnel = async (): Promise<void> => {
    const atBroker = await killConnections(stack, 'broker', ['dst', gw, 'and', 'dport', '=', ':2222']);
    await killConnections(stack, 'gateway', ['sport', '=', ':2222', 'and', 'dst', brokerIp]);
    assert.ok(atBroker >= 1, 'the broker had no tunnel connection to reset');
  };

  /** A record written through the public port and read back. */
  const recordGoesThrough = async (title: string): Promise<void> => {
    const created = await waitFor(
      'the chain to store a record',
      async () => {
        const res = await api.post('notes', { title }, token);
        return res.status === 201 ? res : undefined;
      },
      60_000,
      250,
    );
    const read = await api.get('notes', (created.json as { id: string }).id, token);
    assert.equal(read.status, 200);
    assert.deepEqual((read.json as { data: unknown }).data, { title });
  };

  /**
   * Arms the copier: the tap on the broker's side, and a shell in `copier` that knocks each
   * port it is given. Resolves `done` with the ports of the broker's next knock (its first
   * `spec.length` SYNs into the knock range), once every one has been copied.
   */
  const armCopier = async (copier: Docker.Container): Promise<{ done: Promise<number[]> }> => {
    const tap = await SynTap.start(await hostVeth(stack, 'broker', 'edge'), `src host ${brokerIp} and dst host ${gw} and dst portrange ${spec.rangeStart}-${spec.rangeEnd}`);
    cleanups.push(() => tap.stop());
    const exec = await copier.exec({ Cmd: ['sh', '-c', 'while read -r port; do knock "$0" "$port" || exit 3; echo "$port"; done', gw], AttachStdin: true, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: true });
    const out = new PassThrough();
    const err = new PassThrough();
    const printed: Buffer[] = [];
    const errors: Buffer[] = [];
    out.on('data', (d: Buffer) => printed.push(d));
    err.on('data', (d: Buffer) => errors.push(d));
    stack.docker.modem.demuxStream(stream, out, err);
    const seen: number[] = [];
    tap.on('syn', (syn) => {
      if (seen.length === spec.length) return;
      seen.push(syn.dport);
      stream.write(`${syn.dport}\n`);
      if (seen.length === spec.length) {
        tap.stop();
        stream.end();
      }
    });
    const done = new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the broker sent ${seen.length} knock SYNs to copy within 90 s`)), 90_000);
      stream.on('error', reject);
      stream.on('end', () => {
        clearTimeout(timer);
        exec.inspect().then((info) => {
          const copied = Buffer.concat(printed).toString('utf8').trim().split('\n').map(Number);
          if (info.ExitCode !== 0 || copied.join(',') !== seen.join(',')) reject(new Error(`the copier exited ${info.ExitCode} having copied ${copied.join(',')} of ${seen.join(',')}: ${Buffer.concat(errors).toString('utf8')}`));
          else resolve(seen);
        }, reject);
      });
    });
    return { done };
  };

  before(async () => {
    stack = await upStack();
    gw = await stack.ip('gateway', 'edge');
    brokerIp = await stack.ip('broker', 'edge');
    spec = await gatewayKnockSpec(stack);
    assert.deepEqual([spec.length, spec.rangeStart, spec.rangeEnd], [8, 40000, 40999], 'the demo no longer runs the defaults this test is about');
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    await recordGoesThrough('before any copy');
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  after(async () => {
    await stack?.down();
  });

  it('refuses a copy sent right after the broker knocked as a replay: the SSH port stays filtered to the copier, which a fresh knock opens; the broker is back and a record goes through', async () => {
    const copier = await stack.probe('edge');
    const copierIp = await addressOf(copier);
    const metricsBefore = await gatewayMetrics(stack);
    const tunnelsBefore = count(await logEntries(stack, 'broker'), 'tunnel up');
    const brokerWindowsBefore = count(await logEntries(stack, 'gateway'), 'knock accepted; ssh window open', { src: brokerIp });

    const copy = await armCopier(copier);
    await cutTunnel();
    const ports = await copy.done;
    // What was copied is a whole, right knock of this time: a copy of a working key.
    assert.ok(
      timeCandidates(spec, ports[0]!, Date.now()).some((c) => c.ports.join(',') === ports.join(',')),
      `the copied ports ${ports.join(',')} are not a knock the gateway would take now`,
    );
    await waitFor('the broker tunnel to come back', async () => count(await logEntries(stack, 'broker'), 'tunnel up') > tunnelsBefore, 60_000, 250);

    // The gateway saw the whole copy and refused it as used; the broker's own knock opened.
    const metricsAfter = await waitFor(
      'the copy to be counted as a replay',
      async () => {
        const m = await gatewayMetrics(stack);
        return metricValue(m, 'nonstop_knock_syns_total', 'outcome="replay"') > metricValue(metricsBefore, 'nonstop_knock_syns_total', 'outcome="replay"') ? m : undefined;
      },
      10_000,
      200,
    );
    assert.equal(metricValue(metricsAfter, 'nonstop_knock_syns_total', 'outcome="replay"') - metricValue(metricsBefore, 'nonstop_knock_syns_total', 'outcome="replay"'), 1);
    // The metric is read inside the gateway, its log through Docker's log copy, which can trail it.
    const gatewayLog = await waitFor(
      'the replay’s log line',
      async () => {
        const entries = await logEntries(stack, 'gateway');
        return count(entries, 'replayed knock sequence refused', { src: copierIp }) > 0 ? entries : undefined;
      },
      10_000,
      200,
    ).catch(() => logEntries(stack, 'gateway'));
    assert.equal(count(gatewayLog, 'replayed knock sequence refused', { src: copierIp }), 1, 'the replay was not the copier’s');
    assert.equal(count(gatewayLog, 'knock accepted; ssh window open', { src: copierIp }), 0, 'the copy opened a window');
    assert.ok(count(gatewayLog, 'knock accepted; ssh window open', { src: brokerIp }) > brokerWindowsBefore, 'the broker’s knock did not open');

    assert.equal(await sshPort(copier), 'timeout', 'the SSH port answered the copier');
    // Control, same probe and tool: the port does open to the copier's address for a right knock of its own.
    // Drawn again if its random nonce repeated one used in the window (the broker's among them).
    await knockUntilOpen(stack, copier, spec, gw, copierIp);
    assert.equal(await sshPort(copier), 'connected', 'a fresh knock did not open the SSH port to the copier');

    await recordGoesThrough('after a copied knock');
  });

  it('lets a copy that outruns the broker open a window for the copier alone, where no key it has logs in (the broker’s is confined by from=); the broker, refused as a replay, knocks afresh and its tunnel carries a record', async () => {
    const copier = await stack.probe('edge', { volumes: { 'broker-keys': '/keys' } });
    const copierIp = await addressOf(copier);
    assert.equal((await run(copier, ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', '/tmp/own'])).exitCode, 0);
    // One connection, every key the copier has: its own, and the broker's (as if stolen).
    const login = () =>
      run(copier, ['ssh', '-v', '-F', '/dev/null', '-i', '/tmp/own', '-i', '/keys/id_ed25519', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', '-p', '2222', `broker@${gw}`, 'true']);

    // Control: while no from= confines it, the broker's key logs in from the copier's address (after a right knock).
    await knockUntilOpen(stack, copier, spec, gw, copierIp);
    const control = await login();
    assert.match(control.stderr, /Authenticated to /, `the broker's key did not log in from the copier's address:\n${control.stderr.split('\n').slice(-12).join('\n')}`);

    // The operator confines the broker's key to the broker's address (docs/deploying.md).
    const reloadsBefore = count(await logEntries(stack, 'gateway'), 'authorized_keys reloaded');
    await stack.runAgain('keygen', { BROKER_FROM: brokerIp });
    await waitFor('the gateway to take the new authorized_keys', async () => count(await logEntries(stack, 'gateway'), 'authorized_keys reloaded') > reloadsBefore, 30_000, 250);
    // The broker's key from the broker's address still works: its tunnel was kept.
    assert.equal(count(await logEntries(stack, 'gateway'), 'ssh connection closed: its key is no longer authorized'), 0, 'from= cut the broker off');
    assert.ok(metricValue(await gatewayMetrics(stack), 'nonstop_tunnels_open') >= 1, 'no tunnel open after from= was set');

    const metricsBefore = await gatewayMetrics(stack);
    const gatewayBefore = await logEntries(stack, 'gateway');
    const brokerBefore = await logEntries(stack, 'broker');
    // The broker's SYNs into the gateway wait about 0.3 s each: its eighth knock SYN arrives
    // some 2 s after it left, while each copied SYN follows the broker's by milliseconds.
    const shaper = await SynShaper.install(await hostVeth(stack, 'gateway', 'edge'), brokerIp, 2000);
    cleanups.push(() => shaper.remove());
    const copy = await armCopier(copier);
    await cutTunnel();
    await copy.done;
    await waitFor('the copy to open a window', async () => count(await logEntries(stack, 'gateway'), 'knock accepted; ssh window open', { src: copierIp }) > count(gatewayBefore, 'knock accepted; ssh window open', { src: copierIp }), 10_000, 100);
    // Once the broker's knock is through, nothing is held back: its next knock goes at full speed.
    await waitFor('the broker’s knock to reach the gateway', async () => (await shaper.passed()) >= spec.length, 30_000, 20);
    await shaper.remove();

    // The copier uses its window: the SSH port answers, and no key it has logs in.
    const attempt = await login();
    const tail = attempt.stderr.split('\n').slice(-12).join('\n');
    assert.match(attempt.stderr, /Remote protocol version 2\.0, remote software version nonstop/, `the copier did not reach the SSH server:\n${tail}`);
    assert.doesNotMatch(attempt.stderr, /Authenticated to /, `the copier logged in:\n${tail}`);
    assert.match(attempt.stderr, /Permission denied \(publickey\)/, tail);
    assert.notEqual(attempt.exitCode, 0);

    await waitFor('the broker tunnel to come back', async () => count(await logEntries(stack, 'broker'), 'tunnel up') > count(brokerBefore, 'tunnel up'), 60_000, 250);
    const gatewayAfter = (await logEntries(stack, 'gateway')).slice(gatewayBefore.length);
    const brokerAfter = (await logEntries(stack, 'broker')).slice(brokerBefore.length);
    const metricsAfter = await gatewayMetrics(stack);

    // The gateway: the copier's window was its only one, both its keys were refused, the broker's for from=.
    assert.equal(count(gatewayAfter, 'knock accepted; ssh window open', { src: copierIp }), 1);
    const refused = gatewayAfter.filter((e) => e.message === 'ssh authentication failed' && e.src === copierIp);
    assert.ok(refused.some((e) => e.broker === 'broker' && e.why === 'source_not_permitted'), `the broker's key was not refused for its from=: ${JSON.stringify(refused)}`);
    assert.ok(refused.some((e) => e.broker === undefined && e.why === undefined), `the copier's own key was not refused as unknown: ${JSON.stringify(refused)}`);
    for (const message of ['broker authenticated', 'tunnel open']) assert.equal(count(gatewayAfter, message, { src: copierIp }), 0, `${message} for the copier`);
    // Complete sequences refused as used: at least the broker's own, copied (the copy itself
    // opened); under load a second broker attempt may overlap and be refused too.
    const replays = metricValue(metricsAfter, 'nonstop_knock_syns_total', 'outcome="replay"') - metricValue(metricsBefore, 'nonstop_knock_syns_total', 'outcome="replay"');
    assert.ok(replays >= 1, `replays refused: ${replays}`);
    // The broker: that attempt failed, a fresh knock of its own opened, its key logged in from its address.
    assert.ok(brokerAfter.some((e) => e.message === 'tunnel attempt failed'), 'the broker got in with the knock the copier had used');
    assert.ok(count(gatewayAfter, 'knock accepted; ssh window open', { src: brokerIp }) >= 1);
    assert.ok(gatewayAfter.some((e) => e.message === 'tunnel open' && e.src === brokerIp && e.broker === 'broker'));

    await recordGoesThrough('after a copy that outran the broker');
  });
});
