import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type Docker from 'dockerode';
import { upStack } from '../support/stack/fixture';
import { execIn, type Stack } from '../support/stack/stack';
import { openPorts, parseNmapXml, portCount, portStatesSeen, scannedHost, type NmapReport } from '../support/nmap-xml';

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

describe('exposure, as a scanner sees it', function () {
  this.timeout(900_000);
  const ALL = '1-65535';
  let stack: Stack;
  let scanner: Docker.Container;
  let gatewayIp: string;
  let brokerIp: string;
  /** One SYN scan of every port of the gateway and the broker together (see the tests). */
  let edgeScan: NmapReport;

  before(async () => {
    stack = await upStack();
    scanner = await stack.probe('edge');
    gatewayIp = await stack.ip('gateway', 'edge');
    brokerIp = await stack.ip('broker', 'edge');
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
});
