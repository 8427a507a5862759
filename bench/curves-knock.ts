import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type Docker from 'dockerode';
import { execIn, type Stack } from '../test/support/stack/stack';
import { parsePidFamily, parsePidStat, ticksPerSecond } from './host';

/**
 * What the knock sniffer is made of and how to read it from this host: the gateway's main
 * Node process (the tracker, fed by the pcap stream) and the tcpdump it runs (the capture),
 * each read from /proc like any host process (CPU ticks, resident memory), and the
 * gateway's own figures (its /metrics: sources tracked, packets captured, SYNs by outcome).
 * The SYNs come from bench/tools/synflood.py in a probe on the stack's `edge` network, to
 * the project's own gateway only.
 */

export interface SnifferPids {
  node: number;
  tcpdump: number;
}

function procChildren(ppid: number): { pid: number; comm: string; cmdline: string }[] {
  const out: { pid: number; comm: string; cmdline: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (parsePidFamily(text).ppid === ppid) out.push({ pid: Number(name), comm: parsePidStat(text).comm, cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ') });
    } catch {
      // Ended between readdir and the read.
    }
  }
  return out;
}

/** The gateway's main process (the child of tini, PID 1) and its tcpdump, as host pids. */
export async function snifferPids(container: Docker.Container): Promise<SnifferPids> {
  const info = await container.inspect();
  if (!info.State.Running || !info.State.Pid) throw new Error(`${info.Name} is not running`);
  // Its comm is Node's main thread name (MainThread), so it is told by its command line.
  const node = procChildren(info.State.Pid).find((p) => p.cmdline.includes('services/gateway/main.js'));
  if (!node) throw new Error(`no gateway process under ${info.Name}'s init`);
  const tcpdump = procChildren(node.pid).find((p) => p.comm === 'tcpdump');
  if (!tcpdump) throw new Error(`no tcpdump under ${info.Name}'s gateway process`);
  return { node: node.pid, tcpdump: tcpdump.pid };
}

export interface ProcSample {
  /** Epoch ms. */
  at: number;
  /** CPU seconds so far, per process. */
  cpu: { node: number; tcpdump: number };
  /** Resident memory now, MiB. */
  rssMiB: { node: number; tcpdump: number };
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return parsePidStat(text).ticks / ticksPerSecond();
}

export function sampleSniffer(p: SnifferPids): ProcSample {
  return { at: Date.now(), cpu: { node: cpuSeconds(p.node), tcpdump: cpuSeconds(p.tcpdump) }, rssMiB: { node: rssMiB(p.node), tcpdump: rssMiB(p.tcpdump) } };
}

/** Cores each sniffer process used between two samples. */
export function snifferCores(a: ProcSample, b: ProcSample): { node: number; tcpdump: number } {
  const s = Math.max(0.001, (b.at - a.at) / 1000);
  return { node: (b.cpu.node - a.cpu.node) / s, tcpdump: (b.cpu.tcpdump - a.cpu.tcpdump) / s };
}

/** The container's memory without page cache (cgroup v1 or v2, read on this host), MiB. */
export async function containerMemoryMiB(container: Docker.Container): Promise<number> {
  const info = await container.inspect();
  const v1 = `/sys/fs/cgroup/memory/docker/${info.Id}`;
  if (existsSync(`${v1}/memory.usage_in_bytes`)) {
    const usage = Number(readFileSync(`${v1}/memory.usage_in_bytes`, 'utf8').trim());
    const inactive = Number(/^total_inactive_file (\d+)$/m.exec(readFileSync(`${v1}/memory.stat`, 'utf8'))?.[1] ?? 0);
    return (usage - inactive) / 2 ** 20;
  }
  const v2 = `/sys/fs/cgroup/system.slice/docker-${info.Id}.scope`;
  const usage = Number(readFileSync(`${v2}/memory.current`, 'utf8').trim());
  const inactive = Number(/^inactive_file (\d+)$/m.exec(readFileSync(`${v2}/memory.stat`, 'utf8'))?.[1] ?? 0);
  return (usage - inactive) / 2 ** 20;
}

export interface KnockFigures {
  tracked: number;
  captured: number;
  evicted: number;
  /** SYNs that touched knock progress, by outcome, so far. */
  outcomes: Record<string, number>;
}

/** The gateway's knock figures from its /metrics (read inside the container, on loopback). */
export async function knockFigures(stack: Stack, service: string): Promise<KnockFigures> {
  const res = await stack.exec(service, ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
  if (res.exitCode !== 0) throw new Error(`cannot read ${service}'s metrics: ${res.stderr}`);
  const one = (name: string): number => {
    // Every series carries the registry's default label (service="gateway").
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(res.stdout);
    if (!m) throw new Error(`${service}'s metrics have no ${name}`);
    return Number(m[1]);
  };
  const outcomes: Record<string, number> = {};
  for (const m of res.stdout.matchAll(/^nonstop_knock_syns_total\{[^}]*\boutcome="([a-z]+)"[^}]*\} (\S+)$/gm)) outcomes[m[1]!] = Number(m[2]);
  return { tracked: one('nonstop_knock_sources_tracked'), captured: one('nonstop_knock_packets_captured'), evicted: one('nonstop_knock_sources_evicted'), outcomes };
}

/** How many more entries the host's connection tracking has, and its size; null when it is not loaded. */
export function conntrack(): { count: number; max: number } | null {
  const dir = '/proc/sys/net/netfilter';
  if (!existsSync(`${dir}/nf_conntrack_count`)) return null;
  return { count: Number(readFileSync(`${dir}/nf_conntrack_count`, 'utf8').trim()), max: Number(readFileSync(`${dir}/nf_conntrack_max`, 'utf8').trim()) };
}

export interface FloodResult {
  sent: number;
  seconds: number;
  pps: number;
}

/**
 * SYNs to a gateway's knock ports from `count` spoofed sources of `cidr` from address
 * `offset` on (synflood.py's distinct mode): one each, or round and round them for
 * `seconds` with `cycle`. Returns what the sender reports.
 */
export async function flood(stack: Stack, flooder: Docker.Container, o: { target: string; ports: string; rate: number; seconds: number; cidr: string; count: number; offset: number; cycle: boolean }): Promise<FloodResult> {
  const args = ['python3', '/usr/local/bin/synflood', o.target, o.ports, String(o.rate), String(o.seconds), o.cidr, String(o.count), String(o.offset), ...(o.cycle ? ['cycle'] : [])];
  const res = await execIn(stack.docker, flooder, args, { timeoutMs: (o.seconds + 60) * 1000 });
  if (res.exitCode !== 0) throw new Error(`synflood failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as FloodResult;
}
