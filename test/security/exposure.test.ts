import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type Docker from 'dockerode';
import { upStack } from '../support/stack/fixture';
import { execIn, type Stack } from '../support/stack/stack';

/** Open TCP ports nmap finds on `target` (SYN scan of every port). */
async function openPorts(stack: Stack, scanner: Docker.Container, target: string, ports = '1-65535'): Promise<string[]> {
  const res = await execIn(stack.docker, scanner, ['nmap', '-Pn', '-n', '-sS', '-T4', '--max-retries', '1', '-p', ports, target], { timeoutMs: 300_000 });
  if (res.exitCode !== 0) throw new Error(`nmap failed: ${res.stderr}`);
  return [...res.stdout.matchAll(/^(\d+)\/tcp\s+open\b/gm)].map((m) => m[1]!);
}

describe('exposure, as a scanner sees it', function () {
  this.timeout(900_000);
  let stack: Stack;
  let scanner: Docker.Container;

  before(async () => {
    stack = await upStack();
    scanner = await stack.probe('edge');
  });

  after(async () => {
    await stack?.down();
  });

  it('finds only 80 and 443 open on the gateway across all 65,535 ports', async () => {
    assert.deepEqual(await openPorts(stack, scanner, await stack.ip('gateway', 'edge')), ['80', '443']);
  });

  it('finds no open port on the broker from the edge network', async () => {
    assert.deepEqual(await openPorts(stack, scanner, await stack.ip('broker', 'edge')), []);
  });

  it('cannot reach core from the edge network at all', async () => {
    const coreIp = await stack.ip('core', 'private');
    const res = await execIn(stack.docker, scanner, ['nmap', '-Pn', '-n', '-sS', '--max-retries', '1', '--host-timeout', '30s', '-p', '22,443,8443,9464,27017', coreIp], { timeoutMs: 120_000 });
    assert.doesNotMatch(res.stdout, /\bopen\b/);
  });

  it("from the host, answers only on the gateway's published ports", () => {
    const published = [];
    for (const p of [80, 443, 2222]) published.push(String(execFileSync('docker', ['port', stack.name('gateway'), String(p)], { encoding: 'utf8' }).trim().split(':').pop()));
    const out = execFileSync('nmap', ['-Pn', '-n', '-sT', '--max-retries', '1', '-p', `${published.join(',')},6379,8443,9464,27017`, '127.0.0.1'], { encoding: 'utf8' });
    const open = [...out.matchAll(/^(\d+)\/tcp\s+open\b/gm)].map((m) => m[1]!);
    // The SSH port is published but filtered by the gateway: the host's proxy may accept
    // the TCP connection, yet no SSH server answers without a knock (see the guard tests).
    for (const p of open) assert.ok(published.includes(p), `port ${p} answers on the host`);
    assert.ok(open.includes(published[0]!) && open.includes(published[1]!), `HTTP/HTTPS not answering: ${open.join(',')}`);
  });
});
