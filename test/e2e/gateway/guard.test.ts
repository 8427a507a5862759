import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { upStack } from '../../support/stack/fixture';
import { gatewayMetrics, knocksAcceptedFrom, metricValue } from '../../support/stack/gateway-door';
import { execIn, type Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

/**
 * The gateway's door from the attacker's side: nmap and knockd's own `knock` client, run
 * from other hosts on the edge network, against the real gateway container (static
 * sequence 7000,8000,9000; a 10-second window).
 *
 * Each check waits for the gateway to have read the knock before it looks at the port: `knock`
 * exits once its SYNs are sent, and on a busy machine the sniffer reads them later. A right knock
 * is read when the gateway logs it accepted for the knocker's address; a wrong one when the
 * sniffer's packet count has moved past it (a port that is still filtered before the sniffer
 * read the knock would say nothing). The window is long enough for two scans and a banner read
 * after a knock when docker exec is slow.
 */
describe('the gateway guard, seen from the edge network', function () {
  this.timeout(600_000);
  let stack: Stack;
  let gw: string;
  let alice: Docker.Container;
  let aliceIp: string;
  let mallory: Docker.Container;
  const WINDOW_MS = 10_000;

  const run = (c: Docker.Container, cmd: string[], timeoutMs = 60_000) => execIn(stack.docker, c, cmd, { timeoutMs });
  /** Reads the SSH banner through a plain TCP connection; empty when the port stays silent. */
  const banner = async (c: Docker.Container): Promise<string> => (await run(c, ['sh', '-c', `nc -w 2 ${gw} 2222 </dev/null | head -c 64`])).stdout;
  const portStates = async (c: Docker.Container, ports: string): Promise<Record<string, string>> => {
    const res = await run(c, ['nmap', '-Pn', '-n', '-sS', '--max-retries', '1', '--host-timeout', '60s', '-p', ports, gw]);
    const states: Record<string, string> = {};
    for (const m of res.stdout.matchAll(/^(\d+)\/tcp\s+(\S+)/gm)) states[m[1]!] = m[2]!;
    return states;
  };
  const knock = async (c: Docker.Container, ports: number[], delayMs = 50): Promise<void> => {
    const k = await run(c, ['knock', '-d', String(delayMs), gw, ...ports.map(String)]);
    assert.equal(k.exitCode, 0, `knock: ${k.stderr}`);
  };
  /** Alice's right knock, returned once the gateway has logged it accepted. */
  const knockOpen = async (): Promise<void> => {
    const before = await knocksAcceptedFrom(stack, aliceIp);
    await knock(alice, [7000, 8000, 9000]);
    await waitFor("the gateway to accept alice's knock", async () => (await knocksAcceptedFrom(stack, aliceIp)) > before, 20_000, 200);
  };
  const packetsRead = async (): Promise<number> => metricValue(await gatewayMetrics(stack), 'nonstop_knock_packets_captured');
  /** A wrong knock from alice, returned once the sniffer has read as many packets as it sent. */
  const knockRead = async (ports: number[], delayMs: number): Promise<void> => {
    const before = await packetsRead();
    await knock(alice, ports, delayMs);
    await waitFor('the sniffer to read the knock', async () => (await packetsRead()) >= before + ports.length, 20_000, 200);
  };
  const health = async (): Promise<{ checks: { tunnelsOpen: number } }> =>
    JSON.parse((await stack.exec('gateway', ['/usr/local/bin/nonstop-healthcheck'])).stdout) as { checks: { tunnelsOpen: number } };

  before(async () => {
    stack = await upStack({ NONSTOP_KNOCK_MODE: 'static', NONSTOP_KNOCK_SEQUENCE: '7000,8000,9000', NONSTOP_KNOCK_WINDOW_SECONDS: String(WINDOW_MS / 1000) });
    gw = await stack.ip('gateway', 'edge');
    alice = await stack.probe('edge', { volumes: { 'broker-keys': '/keys' } });
    aliceIp = await stack.addressOf(alice);
    mallory = await stack.probe('edge');
    // The broker knocked and holds its tunnel: the door works before we poke at it.
    await waitFor('the broker tunnel', async () => (await health()).checks.tunnelsOpen >= 1, 60_000, 500);
  });

  after(async () => {
    await stack?.down();
  });

  it('shows 80 and 443 open and the SSH port filtered to a scan', async () => {
    // A separate scanner, and the knock ports in a scan of their own: nmap shuffles its
    // ports, and a scan that happens to hit a static sequence's ports back to back and in
    // order is, by design, a correct knock (SECURITY.md, known limits).
    const scanner = await stack.probe('edge');
    const states = await portStates(scanner, '22,80,443,2222');
    assert.equal(states['80'], 'open');
    assert.equal(states['443'], 'open');
    assert.equal(states['2222'], 'filtered');
    assert.equal(states['22'], 'filtered');
    const knockPorts = await portStates(scanner, '7000,8000,9000');
    for (const p of ['7000', '8000', '9000']) assert.equal(knockPorts[p], 'filtered', `port ${p}`);
  });

  it("opens the SSH port after knockd's knock client sends the sequence, for that address only", async () => {
    assert.equal(await banner(alice), '', 'SSH answered before any knock');
    await knockOpen();
    assert.equal((await portStates(alice, '2222'))['2222'], 'open');
    assert.equal((await portStates(mallory, '2222'))['2222'], 'filtered', 'another address on the same network got in');
    assert.match(await banner(alice), /^SSH-2\.0-nonstop/);
  });

  it('counts knocks, opened windows, SSH connections and open tunnels in its metrics', async () => {
    const before = await gatewayMetrics(stack);
    await knockOpen();
    // The window alice opened is used up here, so the next test starts closed.
    assert.match(await banner(alice), /^SSH-2\.0-/);
    const after = await gatewayMetrics(stack);
    assert.ok(metricValue(after, 'nonstop_knock_windows_opened_total') > metricValue(before, 'nonstop_knock_windows_opened_total'));
    assert.ok(metricValue(after, 'nonstop_knock_syns_total') >= metricValue(before, 'nonstop_knock_syns_total') + 3);
    assert.ok(metricValue(after, 'nonstop_ssh_connections_total') > metricValue(before, 'nonstop_ssh_connections_total'));
    assert.match(after, /^nonstop_tunnels_open(\{[^}]*\})? [1-9]/m);
  });

  it('admits one connection per knock', async () => {
    await knockOpen();
    assert.match(await banner(alice), /^SSH-2\.0-/);
    assert.equal(await banner(alice), '', 'a second connection rode the same knock');
  });

  for (const [what, ports, delay] of [
    ['in the wrong order', [8000, 7000, 9000], 50],
    ['with a wrong port', [7000, 8001, 9000], 50],
    ['with another port touched between steps', [7000, 1234, 8000, 9000], 50],
    ['only partly', [7000, 8000], 50],
    ['too slowly (a step later than the step timeout)', [7000, 8000, 9000], 6000],
  ] as const) {
    it(`keeps the SSH port filtered after a knock ${what}`, async () => {
      await knockRead([...ports], delay);
      assert.equal((await portStates(alice, '2222'))['2222'], 'filtered');
      assert.equal(await banner(alice), '');
    });
  }

  it('closes the window when it expires unused, and an established session outlives its window', async () => {
    // Expiry alone: a window nobody connects through. nmap's SYN scan is no connection the
    // gateway accepts, so it sees the window open without using it up (a window used up by a
    // connection would be closed whether or not windows expire).
    await knockOpen();
    assert.equal((await portStates(alice, '2222'))['2222'], 'open', 'positive control: the window is open');
    await sleep(WINDOW_MS + 2000);
    assert.equal((await portStates(alice, '2222'))['2222'], 'filtered', 'the window did not close');

    await knockOpen();
    // A second broker session from alice, holding a reverse forward open.
    const ssh = await stack.docker.getContainer(alice.id).exec({
      Cmd: ['ssh', '-i', '/keys/id_ed25519', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-N', '-R', '127.0.0.1:6379:127.0.0.1:6379', '-p', '2222', `broker@${gw}`],
      AttachStdout: false,
      AttachStderr: false,
    });
    await ssh.start({ Detach: true });
    await waitFor('the second tunnel', async () => (await health()).checks.tunnelsOpen >= 2, 30_000, 300);
    await sleep(WINDOW_MS + 2000);
    assert.equal((await portStates(alice, '2222'))['2222'], 'filtered', 'the second window did not close');
    assert.equal((await ssh.inspect()).Running, true, 'the established session was cut');
    assert.ok((await health()).checks.tunnelsOpen >= 2, 'the tunnel of the established session went away');
  });
});
