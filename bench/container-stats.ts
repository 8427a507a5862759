import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type Docker from 'dockerode';

/**
 * A container's CPU time read straight from its cgroup (cgroup v1 `cpuacct.usage`, v2
 * `cpu.stat` usage_usec), the counter the kernel keeps. A read takes microseconds and is
 * exact at the moment it is made, so CPU over a window is the difference of two reads at
 * its edges; Docker's stats API instead answers a second or more later with its own
 * sampling window. The benchmark runs on the Docker host, as root, so the files are there.
 */
export interface CgroupCpu {
  /** The cgroup's path inside its hierarchy, e.g. /docker/<id>. */
  path: string;
  /** The file holding its CPU counter. */
  file: string;
  version: 1 | 2;
}

/** Where each hierarchy this process can see is mounted: the cgroup v1 cpuacct one and the v2 one. */
export function parseMountinfo(text: string): { cpuacct?: string; unified?: string } {
  const out: { cpuacct?: string; unified?: string } = {};
  for (const line of text.split('\n')) {
    // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>"
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const mountPoint = left.split(' ')[4];
    const [fstype, , superOptions = ''] = right.split(' ');
    if (!mountPoint) continue;
    if (fstype === 'cgroup2') out.unified ??= mountPoint;
    else if (fstype === 'cgroup' && superOptions.split(',').includes('cpuacct')) out.cpuacct ??= mountPoint;
  }
  return out;
}

/** A process's cgroup paths from /proc/<pid>/cgroup: its cpuacct (v1) and unified (v2) ones. */
export function parseProcCgroup(text: string): { cpuacct?: string; unified?: string } {
  const out: { cpuacct?: string; unified?: string } = {};
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, controllers, path] = m;
    if (controllers === '') out.unified = path!;
    else if (controllers!.split(',').includes('cpuacct')) out.cpuacct = path!;
  }
  return out;
}

/** usage_usec from a cgroup v2 cpu.stat file, in nanoseconds. */
export function parseCpuStatNs(text: string): number {
  const m = /^usage_usec (\d+)$/m.exec(text);
  if (!m) throw new Error(`cpu.stat has no usage_usec line: ${text.slice(0, 200)}`);
  return Number(m[1]) * 1000;
}

let mounts: { cpuacct?: string; unified?: string } | undefined;
const cgroupMounts = (): { cpuacct?: string; unified?: string } => (mounts ??= parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')));

/** The CPU counter of the cgroup a process runs in (v1 cpuacct where mounted, else v2). */
export function cgroupOfPid(pid: number): CgroupCpu {
  const m = cgroupMounts();
  const of = parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  if (m.cpuacct && of.cpuacct !== undefined) return cgroupAt(of.cpuacct);
  if (m.unified && of.unified !== undefined) return cgroupAt(of.unified);
  throw new Error(`no cpuacct or cgroup2 hierarchy for pid ${pid} (mounts ${JSON.stringify(m)})`);
}

/** The CPU counter of a cgroup by its path (v1 cpuacct where mounted, else v2). */
export function cgroupAt(path: string): CgroupCpu {
  const m = cgroupMounts();
  if (m.cpuacct) return { path, file: join(m.cpuacct, path, 'cpuacct.usage'), version: 1 };
  if (m.unified) return { path, file: join(m.unified, path, 'cpu.stat'), version: 2 };
  throw new Error('neither a cgroup v1 cpuacct nor a cgroup2 hierarchy is mounted');
}

/** The cgroup one level up. */
export function parentCgroup(cg: CgroupCpu): CgroupCpu {
  return { path: dirname(cg.path), file: join(dirname(dirname(cg.file)), cg.version === 1 ? 'cpuacct.usage' : 'cpu.stat'), version: cg.version };
}

/** CPU time the cgroup and its descendants have used so far, ns. */
export function readCpuNs(cg: CgroupCpu): number {
  const text = readFileSync(cg.file, 'utf8');
  return cg.version === 1 ? Number(text.trim()) : parseCpuStatNs(text);
}

/** The cgroup of a running container (by its init process). */
export async function containerCgroup(c: Docker.Container): Promise<CgroupCpu> {
  const info = await c.inspect();
  if (!info.State.Running || !info.State.Pid) throw new Error(`container ${info.Name} is not running`);
  return cgroupOfPid(info.State.Pid);
}

export interface CpuSnapshot {
  cpuNs: number;
  /** Epoch ms of the read. */
  at: number;
}

/** CPU time a container has used so far (ns), read from its cgroup now. */
export async function cpuSnapshot(c: Docker.Container): Promise<CpuSnapshot> {
  const cg = await containerCgroup(c);
  return { cpuNs: readCpuNs(cg), at: Date.now() };
}

/** Cores used between two snapshots (1.0 = one core fully busy). */
export function coresUsed(a: CpuSnapshot, b: CpuSnapshot): number {
  return (b.cpuNs - a.cpuNs) / 1e6 / Math.max(1, b.at - a.at);
}

interface DockerStats {
  memory_stats: { usage?: number; stats?: Record<string, number> };
}

/** Memory the container uses now, without page cache (what the OOM killer counts), MiB. */
export async function memoryMiB(c: Docker.Container): Promise<number> {
  const s = (await c.stats({ stream: false })) as unknown as DockerStats;
  const cache = s.memory_stats.stats?.total_inactive_file ?? s.memory_stats.stats?.inactive_file ?? 0;
  return ((s.memory_stats.usage ?? 0) - cache) / 1024 / 1024;
}
