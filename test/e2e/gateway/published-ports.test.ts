import assert from 'node:assert/strict';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { TestNamespace } from '../../support/netns';
import { tcpProbe, type Runner } from '../../support/stack/net-probe';
import { waitFor } from '../../support/wait';

/**
 * A knock and an SSH connection that reach the gateway through the host's published ports
 * must still carry the client's own address, or the window would open for the wrong
 * address (the userland proxy, or any NAT in that path, would do exactly that). The client
 * is a network namespace made by this test, routed to the host over a veth pair; the
 * ports are published on the host end of that veth only.
 */
describe('knocks and SSH through published ports', function () {
  this.timeout(600_000);
  let ns: TestNamespace;
  let stack: Stack;
  const published: Record<number, number> = {};

  before(async () => {
    ns = TestNamespace.create();
    stack = await upStack(
      { NONSTOP_KNOCK_MODE: 'static', NONSTOP_KNOCK_SEQUENCE: '7000,8000,9000', NONSTOP_BIND: ns.hostAddress },
      (spec) => {
        const gw = spec.services.gateway!;
        for (const port of [7000, 8000, 9000]) gw.ports.push({ hostIp: ns.hostAddress, hostPort: '', containerPort: port, protocol: 'tcp' });
      },
    );
    for (const port of [443, 2222, 7000, 8000, 9000]) published[port] = await stack.hostPort('gateway', port);
  });

  after(async () => {
    await stack?.down();
    ns?.destroy();
  });

  const banner = (): string => ns.run(['sh', '-c', `nc -w 2 ${ns.hostAddress} ${published[2222]} </dev/null | head -c 64`]).stdout;

  // The pinned Node on the host's PATH runs the probe inside the namespace.
  const fromNamespace: Runner = (cmd) => {
    const r = ns.run(cmd);
    return Promise.resolve({ exitCode: r.status, stdout: r.stdout, stderr: r.stderr });
  };

  it('keeps the published SSH port silent before a knock, while the published HTTPS port answers the same client', async () => {
    assert.equal(await tcpProbe(fromNamespace, ns.hostAddress, published[443]!), 'connected', 'positive control: the namespace reaches the published HTTPS port');
    // Filtered means dropped: no SYN-ACK and no RST, so the connection attempt times out.
    assert.equal(await tcpProbe(fromNamespace, ns.hostAddress, published[2222]!), 'timeout');
    assert.equal(banner(), '');
  });

  it('opens the SSH port for the namespace address when it knocks through the published ports', async () => {
    const k = ns.run(['knock', '-d', '50', ns.hostAddress, String(published[7000]), String(published[8000]), String(published[9000])]);
    assert.equal(k.status, 0, k.stderr);
    // Wait for this knock's own line: the broker's knock at start-up logs 'knock accepted' too,
    // and the port is looked at once the gateway has taken the knock, not while it may still be
    // reading it.
    const acceptedFrom = async (): Promise<string[]> =>
      (await stack.logs('gateway'))
        .split('\n')
        .filter((l) => l.includes('knock accepted'))
        .map((l) => (JSON.parse(l) as { src: string }).src);
    const accepted = await waitFor('the namespace’s knock in the gateway log', async () => {
      const from = await acceptedFrom();
      return from.includes(ns.nsAddress) ? from : undefined;
    }).catch(acceptedFrom);
    assert.ok(accepted.includes(ns.nsAddress), `the gateway saw the knock from ${accepted.join(', ')}, not from ${ns.nsAddress}`);
    assert.match(banner(), /^SSH-2\.0-nonstop/);
  });
});
