import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import type Docker from 'dockerode';
import { upStack } from '../support/stack/fixture';
import { gatewayKnockSpec, knockUntilOpen } from '../support/stack/gateway-door';
import { execIn, type ExecResult, type Stack } from '../support/stack/stack';
import { openPorts, parseNmapXml, portCount, portState, portStatesSeen, scannedHost, type NmapReport } from '../support/nmap-xml';
import { beyondLoopback, parseProcNetUdp, type UdpSocket } from '../support/proc-net-udp';
import { waitFor } from '../support/wait';

/**
 * Runs nmap in the scanner container and reads its XML report. A non-zero exit, or a
 * report that does not say the run finished, fails the test: an empty scan is not a
 * clean one.
 */
async function scan(stack: Stack, scanner: Docker.Container, args: string[], targets: string[]): Promise<NmapReport> {
  const res = await execIn(stack.docker, scanner, ['nmap', '-n', '-oX', '-', ...args, ...targets], { timeoutMs: 600_000 });
  assert.equal(res.exitCode, 0, `nmap exited ${res.exitCode}: ${res.stderr || res.stdout.slice(0, 500)}`);
  return parseNmapXml(res.stdout);
}

/**
 * A random ULA /64 (RFC 4193: fd, a 40-bit global ID, a 16-bit subnet ID) for the test
 * stack's edge network, so that stacks running side by side on one engine never collide.
 */
function randomUlaSubnet(): string {
  const h = randomBytes(7).toString('hex');
  return `fd${h.slice(0, 2)}:${h.slice(2, 6)}:${h.slice(6, 10)}:${h.slice(10, 14)}::/64`;
}

/**
 * A UDP socket on [::]:port (IPv4 too) that answers every datagram, for positive controls:
 * it stops on "stop" from loopback (exit 0), or exits 4 after its lifetime.
 */
const UDP_RESPONDER = `
const dgram = require('dgram');
const [port, lifeMs] = process.argv.slice(1).map(Number);
const s = dgram.createSocket({ type: 'udp6', ipv6Only: false });
s.on('error', (e) => { process.stderr.write(e.code + ': ' + e.message); process.exit(3); });
s.on('message', (msg, from) => {
  if (String(msg) === 'stop' && /^(::ffff:127\\.0\\.0\\.1|::1)$/.test(from.address)) return s.close(() => process.exit(0));
  s.send('nonstop-udp-control', from.port, from.address);
});
s.bind(port, '::');
setTimeout(() => process.exit(4), lifeMs);
`;

/** Sends one datagram from a connected socket; with waitMs, prints {"reply": text or null}. */
const UDP_SEND = `
const dgram = require('dgram');
const [host, port, text, waitMs] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.on('error', (e) => { process.stderr.write(e.code + ': ' + e.message); process.exit(3); });
s.connect(Number(port), host, () => s.send(text, () => {
  if (Number(waitMs) === 0) return s.close();
  const t = setTimeout(() => { process.stdout.write(JSON.stringify({ reply: null })); process.exit(0); }, Number(waitMs));
  s.on('message', (m) => { clearTimeout(t); process.stdout.write(JSON.stringify({ reply: String(m) })); process.exit(0); });
}));
`;

const RESPONDER_LIFE_MS = 900_000;

describe('exposure, as a scanner sees it', function () {
  this.timeout(900_000);
  const ALL = '1-65535';
  let stack: Stack;
  let scanner: Docker.Container;
  let gatewayIp: string;
  let brokerIp: string;
  let gatewayIp6: string;
  let brokerIp6: string;
  /** One SYN scan of every port of the gateway and the broker together (see the tests). */
  let edgeScan: NmapReport;

  before(async () => {
    // The edge network has IPv6 here, in the test stack only: compose.yaml ships IPv4-only,
    // since a fixed IPv6 subnet there could collide with a user's own networks.
    stack = await upStack({}, (spec) => {
      spec.networks.edge!.ipv6Subnet = randomUlaSubnet();
    });
    scanner = await stack.probe('edge');
    gatewayIp = await stack.ip('gateway', 'edge');
    brokerIp = await stack.ip('broker', 'edge');
    gatewayIp6 = await stack.ip6('gateway', 'edge');
    brokerIp6 = await stack.ip6('broker', 'edge');
    // No -Pn: host discovery (ARP on this segment) must find each host up on its own, so
    // "up" in the report means the host answered.
    edgeScan = await scan(stack, scanner, ['-sS', '-T4', '--max-retries', '1', '-p', ALL], [gatewayIp, brokerIp]);
  });

  after(async () => {
    await stack?.down();
  });

  it('finds only 80 and 443 open on the gateway across all 65,535 ports', () => {
    const gateway = scannedHost(edgeScan, gatewayIp, portCount(ALL));
    assert.equal(gateway.reason, 'arp-response');
    assert.deepEqual(openPorts(gateway), [80, 443]);
  });

  it('finds no open port on the broker from the edge network, in the scan that finds the gateway open', () => {
    // Positive control in the same scan: the same nmap run found the gateway's ports open.
    assert.deepEqual(openPorts(scannedHost(edgeScan, gatewayIp, portCount(ALL))), [80, 443]);
    const broker = scannedHost(edgeScan, brokerIp, portCount(ALL));
    assert.equal(broker.reason, 'arp-response');
    assert.deepEqual(openPorts(broker), []);
    // Closed (reset), not filtered: the broker answered for every port and none listens.
    assert.deepEqual(portStatesSeen(broker), ['closed']);
  });

  it('cannot reach core from the edge network at all, in a scan that reaches the gateway', async () => {
    const coreIp = await stack.ip('core', 'private');
    const ports = '22,443,8443,9464,27017';
    // -Pn: core would not answer discovery either; every port must be probed and time out.
    const report = await scan(stack, scanner, ['-Pn', '-sS', '--max-retries', '1', '--host-timeout', '120s', '-p', ports], [coreIp, gatewayIp]);
    assert.ok(openPorts(scannedHost(report, gatewayIp, portCount(ports))).includes(443), 'positive control: the gateway 443 open in the same scan');
    const core = scannedHost(report, coreIp, portCount(ports));
    assert.deepEqual(portStatesSeen(core), ['filtered'], `core ports ${JSON.stringify([...core.ports])} ${JSON.stringify(core.extraports)}`);
  });

  it("from the host, answers only on the gateway's published ports", async () => {
    const published: number[] = [];
    for (const p of [80, 443, 2222]) published.push(await stack.hostPort('gateway', p));
    const ports = `${published.join(',')},6379,8443,9464,27017`;
    const res = spawnSync('nmap', ['-Pn', '-n', '-sT', '--max-retries', '1', '-oX', '-', '-p', ports, '127.0.0.1'], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(res.status, 0, `nmap exited ${res.status} (${res.error?.message ?? ''}): ${res.stderr}`);
    const host = scannedHost(parseNmapXml(res.stdout), '127.0.0.1', portCount(ports));
    const open = openPorts(host);
    // The SSH port is published but filtered by the gateway: the host's proxy may accept
    // the TCP connection, yet no SSH server answers without a knock (see the guard tests).
    for (const p of open) assert.ok(published.includes(p), `port ${p} answers on the host`);
    assert.ok(open.includes(published[0]!) && open.includes(published[1]!), `HTTP/HTTPS not answering: ${open.join(',')}`);
  });

  /** Every UDP socket in the service's network namespace, IPv4 and IPv6, whoever owns it. */
  async function udpSockets(service: string): Promise<UdpSocket[]> {
    const sockets: UdpSocket[] = [];
    for (const [file, family] of [['/proc/net/udp', 4], ['/proc/net/udp6', 6]] as const) {
      const res = await stack.exec(service, ['cat', file]);
      assert.equal(res.exitCode, 0, `${service}: cat ${file} exited ${res.exitCode}: ${res.stderr}`);
      sockets.push(...parseProcNetUdp(res.stdout, family));
    }
    return sockets;
  }

  async function udpSend(service: string, host: string, port: number, text: string, waitMs: number): Promise<{ reply: string | null } | undefined> {
    const res = await stack.exec(service, ['node', '-e', UDP_SEND, host, String(port), text, String(waitMs)]);
    assert.equal(res.exitCode, 0, `${service}: sending to ${host}:${port} exited ${res.exitCode}: ${res.stderr}`);
    return waitMs === 0 ? undefined : (JSON.parse(res.stdout) as { reply: string | null });
  }

  interface Responder {
    service: string;
    port: number;
    done: Promise<ExecResult>;
  }

  /** Starts UDP_RESPONDER in a service's container; returns once the inventory shows its socket. */
  async function startResponder(service: string, port: number): Promise<Responder> {
    const done = stack.exec(service, ['node', '-e', UDP_RESPONDER, String(port), String(RESPONDER_LIFE_MS)], { timeoutMs: RESPONDER_LIFE_MS + 60_000 });
    // Awaited in stopResponder; this only keeps a failure before then from going unhandled.
    done.catch(() => undefined);
    await waitFor(
      `${service}'s UDP socket on [::]:${port} in its /proc/net/udp6`,
      async () => beyondLoopback(await udpSockets(service)).some((s) => s.family === 6 && s.address === '::' && s.port === port && s.state === 7),
      30_000,
      250,
    );
    return { service, port, done };
  }

  async function stopResponder(r: Responder): Promise<void> {
    await udpSend(r.service, '127.0.0.1', r.port, 'stop', 0);
    const res = await r.done;
    assert.equal(res.exitCode, 0, `${r.service}'s UDP responder exited ${res.exitCode}: ${res.stderr}`);
  }

  const distinctPorts = (): [number, number] => {
    const a = randomInt(20_000, 39_000);
    return [a, a + 1 + randomInt(500)];
  };

  it('has no UDP socket bound beyond loopback in the gateway, the broker or core (the whole table of each namespace)', async () => {
    for (const service of ['gateway', 'broker', 'core']) {
      const sockets = await udpSockets(service);
      // Positive control in the same table: Docker's embedded DNS resolver listens on
      // 127.0.0.11 in every container on a user-defined network, so a reader that saw no
      // sockets at all could not pass.
      assert.ok(
        sockets.some((s) => s.address === '127.0.0.11' && s.state === 7),
        `${service}: Docker's resolver socket is not in the table: ${JSON.stringify(sockets)}`,
      );
      assert.deepEqual(beyondLoopback(sockets), [], `${service} has UDP sockets beyond loopback`);
    }
  });

  it('sees a UDP socket a process binds beyond loopback in the gateway and the broker, and not after it closes', async () => {
    const ports = distinctPorts();
    for (const [i, service] of (['gateway', 'broker'] as const).entries()) {
      // startResponder waits for the socket to show in the table: that is the check.
      const r = await startResponder(service, ports[i]!);
      await stopResponder(r);
      assert.deepEqual(beyondLoopback(await udpSockets(service)), [], `${service}: the socket stayed after its process exited`);
    }
  });

  it('finds no UDP port answering on the gateway or the broker across all 65,535 ports, over IPv4 and IPv6, in scans that find a socket bound in the broker open', async () => {
    // A full UDP scan waits for ICMP port-unreachable, which Linux sends about once a second,
    // so it would take most of a day. --defeat-icmp-ratelimit stops waiting: a port that
    // answers with UDP is "open", every silent one "closed|filtered". That is what a remote
    // scan can learn of UDP at all, and the socket table above covers the silent sockets.
    const [gatewayPort, brokerPort] = distinctPorts();
    const responders = [await startResponder('gateway', gatewayPort), await startResponder('broker', brokerPort)];
    try {
      // The gateway's socket answers on loopback: what keeps it from a scanner is the firewall.
      assert.deepEqual(await udpSend('gateway', '127.0.0.1', gatewayPort, 'ping', 5000), { reply: 'nonstop-udp-control' });
      for (const [family, gw, broker] of [
        [4, gatewayIp, brokerIp],
        [6, gatewayIp6, brokerIp6],
      ] as const) {
        const v6 = family === 6 ? ['-6'] : [];
        const report = await scan(stack, scanner, [...v6, '-sU', '--defeat-icmp-ratelimit', '--max-retries', '1', '--min-rate', '3000', '-p', ALL], [gw, broker]);
        const brokerHost = scannedHost(report, broker, portCount(ALL));
        const gatewayHost = scannedHost(report, gw, portCount(ALL));
        // Positive control in the same scan: the socket bound in the broker is found open,
        // and the broker's kernel refused some other ports (ICMP port unreachable came back).
        assert.deepEqual(openPorts(brokerHost), [brokerPort], `IPv${family}: broker ${JSON.stringify([...brokerHost.ports])}`);
        assert.ok(portStatesSeen(brokerHost).includes('closed'), `IPv${family}: no port-unreachable from the broker: ${JSON.stringify(brokerHost.extraports)}`);
        // The gateway: nothing answers, not even its bound socket, and nothing is refused:
        // every datagram is dropped without a reply.
        assert.deepEqual(openPorts(gatewayHost), [], `IPv${family}: gateway`);
        assert.deepEqual(portStatesSeen(gatewayHost), ['closed|filtered'], `IPv${family}: gateway ${JSON.stringify([...gatewayHost.ports])} ${JSON.stringify(gatewayHost.extraports)}`);
      }
    } finally {
      for (const r of responders) await stopResponder(r);
    }
  });

  it('over IPv6, finds only 80 and 443 open on the gateway across all 65,535 TCP ports, the SSH port filtered but for an address that knocked over IPv6, and nothing open on the broker', async () => {
    // The knock first: knock budgets are per /64 for IPv6, the whole edge network here, and
    // the full scan below sends SYNs into the knock range that spend it.
    const spec = await gatewayKnockSpec(stack);
    const knocker = await stack.probe('edge');
    const knockerIp6 = await stack.addressOf(knocker, 'edge', 6);
    // Until the gateway logs it accepted: a random nonce can repeat one used in the window (a
    // replay, drawn again), and the scan below must not race the gateway reading the knock.
    await knockUntilOpen(stack, knocker, spec, gatewayIp6, knockerIp6, { ipv6: true });
    // Positive control: the SSH port answers the address that knocked over IPv6, so
    // "filtered" below is the firewall's IPv6 rules at work, not a port nothing serves.
    const opened = await scan(stack, knocker, ['-6', '-Pn', '-sS', '--max-retries', '1', '-p', '2222'], [gatewayIp6]);
    assert.equal(portState(scannedHost(opened, gatewayIp6, 1), 2222), 'open', 'the knock over IPv6 did not open the SSH port');

    const report = await scan(stack, scanner, ['-6', '-sS', '-T4', '--max-retries', '1', '-p', ALL], [gatewayIp6, brokerIp6]);
    const gateway = scannedHost(report, gatewayIp6, portCount(ALL));
    assert.equal(gateway.reason, 'nd-response');
    assert.deepEqual(openPorts(gateway), [80, 443]);
    assert.equal(portState(gateway, 2222), 'filtered');
    assert.deepEqual(portStatesSeen(gateway), ['filtered', 'open']);
    const broker = scannedHost(report, brokerIp6, portCount(ALL));
    assert.equal(broker.reason, 'nd-response');
    assert.deepEqual(portStatesSeen(broker), ['closed']);
  });
});
