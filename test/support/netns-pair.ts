import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Two network namespaces this test creates, joined only to each other by a veth pair:
 * `host` stands for a machine that runs the gateway with host networking beside services
 * of its own, `peer` for a client on the internet. Neither is linked to the machine's own
 * namespace, so the machine's firewall and routing play no part, and no test traffic
 * leaves the pair. Each pair is its own link, so fixed addresses cannot collide.
 */
export class NamespacePair {
  readonly host: string;
  readonly peer: string;
  readonly hostV4 = '10.204.0.1';
  readonly peerV4 = '10.204.0.2';
  readonly hostV6 = 'fd42:204::1';
  readonly peerV6 = 'fd42:204::2';

  private constructor() {
    const id = randomBytes(3).toString('hex');
    this.host = `nph-${id}`;
    this.peer = `npp-${id}`;
  }

  static create(): NamespacePair {
    const pair = new NamespacePair();
    const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
    const hostIf = `vh${pair.host.slice(4)}`;
    const peerIf = `vp${pair.peer.slice(4)}`;
    try {
      ip('netns', 'add', pair.host);
      ip('netns', 'add', pair.peer);
      ip('link', 'add', hostIf, 'netns', pair.host, 'type', 'veth', 'peer', 'name', peerIf, 'netns', pair.peer);
      for (const [ns, dev, v4, v6] of [
        [pair.host, hostIf, pair.hostV4, pair.hostV6],
        [pair.peer, peerIf, pair.peerV4, pair.peerV6],
      ] as const) {
        ip('-n', ns, 'addr', 'add', `${v4}/30`, 'dev', dev);
        // nodad: the address is usable at once instead of after duplicate detection.
        ip('-n', ns, 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad');
        ip('-n', ns, 'link', 'set', dev, 'up');
        ip('-n', ns, 'link', 'set', 'lo', 'up');
      }
    } catch (err) {
      pair.destroy();
      throw err;
    }
    return pair;
  }

  /** Runs a command inside namespace `ns` and waits for it (blocking: keep it short). */
  runSync(ns: string, cmd: string[], timeoutMs = 30_000): { status: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', timeout: timeoutMs });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Runs a command inside namespace `ns` without blocking the event loop. */
  run(ns: string, cmd: string[], timeoutMs = 30_000): Promise<{ status: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
      child.on('error', (err) => resolve({ status: -1, stdout, stderr: `${stderr}${err.message}` }));
      child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }));
    });
  }

  /** A script in `dir` that runs `binary` inside namespace `ns`: for code that takes a binary path (nft, tcpdump). */
  wrapper(dir: string, ns: string, binary: string): string {
    const path = join(dir, `${ns}-${binary.split('/').pop() ?? 'bin'}`);
    writeFileSync(path, `#!/bin/sh\nexec ip netns exec ${ns} ${binary} "$@"\n`);
    chmodSync(path, 0o755);
    return path;
  }

  /**
   * Connects from the peer to each target at once and reports what a scanner would see:
   * `open` (with the first line the service sent), `refused` (an RST: nothing listens and
   * nothing filters) or `filtered` (no answer at all within `waitMs`).
   */
  async probe(targets: readonly { host: string; port: number }[], waitMs = 2000): Promise<ProbeResult[]> {
    const r = await this.run(this.peer, [process.execPath, '-e', PROBE_SCRIPT, JSON.stringify({ targets, waitMs })], waitMs + 20_000);
    if (r.status !== 0) throw new Error(`probe failed (exit ${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as ProbeResult[];
  }

  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.host], { stdio: 'ignore' });
    spawnSync('ip', ['netns', 'del', this.peer], { stdio: 'ignore' });
  }
}

export interface ProbeResult {
  host: string;
  port: number;
  outcome: 'open' | 'refused' | 'filtered' | `error ${string}`;
  /** The first line the server sent, when open. */
  banner: string;
}

const PROBE_SCRIPT = `
const net = require('node:net');
const { targets, waitMs } = JSON.parse(process.argv[1]);
Promise.all(targets.map(({ host, port }) => new Promise((resolve) => {
  const socket = net.connect({ host, port });
  let outcome = 'filtered';
  let banner = '';
  const done = () => { clearTimeout(timer); socket.destroy(); resolve({ host, port, outcome, banner }); };
  const timer = setTimeout(done, waitMs);
  socket.on('connect', () => { outcome = 'open'; });
  socket.on('data', (b) => { banner += b.toString('latin1'); if (banner.includes('\\n')) { banner = banner.slice(0, banner.indexOf('\\n')).trim(); done(); } });
  socket.on('error', (err) => { outcome = err.code === 'ECONNREFUSED' ? 'refused' : 'error ' + err.code; done(); });
  socket.on('close', done);
}))).then((results) => process.stdout.write(JSON.stringify(results)));
`;
