import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { Stack } from './stack';

/**
 * The host's view of a test stack's network, for attacks that need a place on the wire:
 * the host end of a container's veth (where everything the container sends can be seen,
 * and what it receives can be held back), a tcpdump tap there, traffic shaping, and
 * `ss -K` inside a container's network namespace. Host tools only (tcpdump, tc, ip,
 * nsenter: scripts/bootstrap.sh installs them); the test runs as root. A missing tool or
 * an unexpected answer throws: nothing here degrades to "no packets seen".
 */

const exec = promisify(execFile);

export class HostNetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostNetError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    return (await exec(cmd, args, { maxBuffer: 1 << 20 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new HostNetError(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

interface IpLink {
  ifindex: number;
  ifname: string;
  link_index?: number;
  addr_info?: { family: string; local: string }[];
}

/** The host end of the veth that joins `service`'s container to `network`. */
export async function hostVeth(stack: Stack, service: string, network: string): Promise<string> {
  const pid = (await stack.inspect(service)).State.Pid;
  const address = await stack.ip(service, network);
  const inside = JSON.parse(await run('nsenter', ['-t', String(pid), '-n', 'ip', '-j', 'addr', 'show'])) as IpLink[];
  const own = inside.find((l) => l.addr_info?.some((a) => a.family === 'inet' && a.local === address));
  if (own?.link_index === undefined) throw new HostNetError(`${service} has no veth holding ${address}`);
  const host = JSON.parse(await run('ip', ['-j', 'link', 'show'])) as IpLink[];
  const peer = host.find((l) => l.ifindex === own.link_index);
  if (!peer) throw new HostNetError(`the host has no interface ${own.link_index}, the peer of ${service}'s ${own.ifname}`);
  return peer.ifname;
}

/** A TCP SYN (no ACK) as tcpdump printed it. */
export interface TappedSyn {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

const SYN_LINE = /IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): Flags \[S\]/;

/**
 * tcpdump on a host interface, reporting each SYN (no ACK) that matches `filter` the moment
 * it is seen: immediate mode and line-buffered output, so nothing waits for a buffer to fill.
 */
export class SynTap extends EventEmitter<{ syn: [TappedSyn] }> {
  private constructor(private readonly child: ChildProcess) {
    super();
  }

  /** Resolves once tcpdump is capturing. */
  static start(dev: string, filter: string): Promise<SynTap> {
    const child = spawn('tcpdump', ['-i', dev, '-p', '-n', '-l', '--immediate-mode', `tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and (${filter})`], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tap = new SynTap(child);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = SYN_LINE.exec(line);
      if (m) tap.emit('syn', { src: m[1]!, sport: Number(m[2]), dst: m[3]!, dport: Number(m[4]) });
    });
    return new Promise((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString('utf8');
        if (err.includes('listening on')) resolve(tap);
      });
      child.on('error', (e) => reject(new HostNetError(`tcpdump: ${e.message}`)));
      child.on('exit', (code) => reject(new HostNetError(`tcpdump on ${dev} exited ${code}: ${err.trim()}`)));
    });
  }

  stop(): void {
    this.child.kill();
  }
}

/**
 * Holds back the SYNs (no ACK) one source sends into a container: on the host end of the
 * container's veth (its egress is the container's ingress), an HTB class of `rateBits`
 * takes the source's connection-opening packets, one after the other (a SYN is 74 bytes
 * on the wire: at 2 kbit/s each waits about 0.3 s for the one before it). Established
 * connections and every other source pass at once. The kernel here has no netem; a rate
 * stands in for a delay.
 */
export class SynShaper {
  private removed = false;

  private constructor(readonly dev: string) {}

  static async install(dev: string, src: string, rateBits: number): Promise<SynShaper> {
    const shaper = new SynShaper(dev);
    const tc = (...args: string[]): Promise<string> => run('tc', args);
    await tc('qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '10');
    try {
      await tc('class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit', 'quantum', '60000');
      await tc('class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:20', 'htb', 'rate', `${rateBits}bit`, 'ceil', `${rateBits}bit`, 'burst', '1b', 'cburst', '1b', 'quantum', '1514');
      // TCP from `src` whose flags, among FIN|SYN|RST|ACK, are SYN alone. Offset 33 is the
      // TCP flags byte behind a 20-byte IPv4 header; Linux puts no IP options on TCP.
      await tc('filter', 'add', 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'src', `${src}/32`, 'match', 'ip', 'protocol', '6', '0xff', 'match', 'u8', '0x02', '0x17', 'at', '33', 'flowid', '1:20');
    } catch (err) {
      await shaper.remove();
      throw err;
    }
    return shaper;
  }

  /** How many packets the slow class has let through so far. */
  async passed(): Promise<number> {
    const out = await run('tc', ['-s', 'class', 'show', 'dev', this.dev, 'classid', '1:20']);
    const m = /Sent \d+ bytes (\d+) pkt/.exec(out);
    if (!m) throw new HostNetError(`tc printed no counters for class 1:20 on ${this.dev}: ${out}`);
    return Number(m[1]);
  }

  /** Takes the shaping off (what it still held is dropped). Safe to call twice. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await run('tc', ['qdisc', 'del', 'dev', this.dev, 'root']);
  }
}

/**
 * Aborts the TCP connections matching an `ss` filter inside `service`'s network namespace
 * (`ss -K`: the kernel resets them, as a middlebox dropping state would). Returns how many.
 */
export async function killConnections(stack: Stack, service: string, filter: string[]): Promise<number> {
  const pid = (await stack.inspect(service)).State.Pid;
  const out = await run('nsenter', ['-t', String(pid), '-n', 'ss', '-K', '-t', '-n', '-H', ...filter]);
  return out.split('\n').filter((l) => l.trim() !== '').length;
}
