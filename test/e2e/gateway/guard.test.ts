import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { upStack } from '../../support/stack/fixture';
import { execIn, type Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

/**
 * The gateway's door from the attacker's side: nmap and knockd's own `knock` client, run
 * from other hosts on the edge network, against the real gateway container (static
 * sequence 7000,8000,9000; a 4-second window).
 */
describe('the gateway guard, seen from the edge network', function () {
  this.timeout(600_000);
  let stack: Stack;
  let gw: string;
  let alice: Docker.Container;
  let mallory: Docker.Container;

  const run = (c: Docker.Container, cmd: string[], timeoutMs = 60_000) => execIn(stack.docker, c, cmd, { timeoutMs });
  /** Reads the SSH banner through a plain TCP connection; empty when the port stays silent. */
  const banner = async (c: Docker.Container): Promise<string> => (await run(c, ['sh', '-c', `nc -w 2 ${gw} 2222 </dev/null | head -c 64`])).stdout;
  const portStates = async (c: Docker.Container, ports: string): Promise<Record<string, string>> => {
    const res = await run(c, ['nmap', '-Pn', '-n', '-sS', '--max-retries', '1', '--host-timeout', '60s', '-p', ports, gw]);
    const states: Record<string, string> = {};
    for (const m of res.stdout.matchAll(/^(\d+)\/tcp\s+(\S+)/gm)) states[m[1]!] = m[2]!;
    return states;
  };
  const knock = (c: Docker.Container, ports: number[], delayMs = 50) => run(c, ['knock', '-d', String(delayMs), gw, ...ports.map(String)]);
  const health = async (): Promise<{ checks: { tunnelsOpen: number } }> =>
    JSON.parse((await stack.exec('gateway', ['/usr/local/bin/nonstop-healthcheck'])).stdout) as { checks: { tunnelsOpen: number } };

  before(async () => {
    stack = await upStack({ NONSTOP_KNOCK_MODE: 'static', NONSTOP_KNOCK_SEQUENCE: '7000,8000,9000', NONSTOP_KNOCK_WINDOW_SECONDS: '4' });
    gw = await stack.ip('gateway', 'edge');
    alice = await stack.probe('edge', { volumes: { 'broker-keys': '/keys' } });
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
    const k = await knock(alice, [7000, 8000, 9000]);
    assert.equal(k.exitCode, 0, k.stderr);
    assert.equal((await portStates(alice, '2222'))['2222'], 'open');
    assert.equal((await portStates(mallory, '2222'))['2222'], 'filtered', 'another address on the same network got in');
    assert.match(await banner(alice), /^SSH-2\.0-nonstop/);
  });

  it('counts knocks, opened windows, SSH connections and open tunnels in its metrics', async () => {
    const metrics = async (): Promise<string> => (await stack.exec('gateway', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"])).stdout;
    const value = (text: string, name: string): number =>
      [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
    const before = await metrics();
    await knock(alice, [7000, 8000, 9000]);
    // The window alice opened is used up here, so the next test starts closed.
    assert.match(await banner(alice), /^SSH-2\.0-/);
    const after = await metrics();
    assert.ok(value(after, 'nonstop_knock_windows_opened_total') > value(before, 'nonstop_knock_windows_opened_total'));
    assert.ok(value(after, 'nonstop_knock_syns_total') >= value(before, 'nonstop_knock_syns_total') + 3);
    assert.ok(value(after, 'nonstop_ssh_connections_total') > value(before, 'nonstop_ssh_connections_total'));
    assert.match(after, /^nonstop_tunnels_open(\{[^}]*\})? [1-9]/m);
  });

  it('admits one connection per knock', async () => {
    await knock(alice, [7000, 8000, 9000]);
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
      await knock(alice, [...ports], delay);
      assert.equal((await portStates(alice, '2222'))['2222'], 'filtered');
      assert.equal(await banner(alice), '');
    });
  }

  it('closes the window after it expires while an established session stays up', async () => {
    await knock(alice, [7000, 8000, 9000]);
    // A second broker session from alice, holding a reverse forward open.
    const ssh = await stack.docker.getContainer(alice.id).exec({
      Cmd: ['ssh', '-i', '/keys/id_ed25519', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-N', '-R', '127.0.0.1:6379:127.0.0.1:6379', '-p', '2222', `broker@${gw}`],
      AttachStdout: false,
      AttachStderr: false,
    });
    await ssh.start({ Detach: true });
    await waitFor('the second tunnel', async () => (await health()).checks.tunnelsOpen >= 2, 30_000, 300);
    await sleep(6000); // past the 4 s window
    assert.equal((await portStates(alice, '2222'))['2222'], 'filtered', 'the window did not close');
    assert.equal((await ssh.inspect()).Running, true, 'the established session was cut');
    assert.ok((await health()).checks.tunnelsOpen >= 2, 'the tunnel of the established session went away');
  });
});
