import type Docker from 'dockerode';

export interface CpuSnapshot {
  cpuNs: number;
  at: number;
}

interface DockerStats {
  read?: string;
  cpu_stats: { cpu_usage: { total_usage: number } };
  memory_stats: { usage?: number; stats?: Record<string, number> };
}

/**
 * CPU time a container has used so far (ns), from the engine's stats, stamped with the
 * moment the engine read it (the call itself can take a second or so).
 */
export async function cpuSnapshot(c: Docker.Container): Promise<CpuSnapshot> {
  const s = (await c.stats({ stream: false })) as unknown as DockerStats;
  const read = s.read ? Date.parse(s.read) : NaN;
  return { cpuNs: s.cpu_stats.cpu_usage.total_usage, at: Number.isFinite(read) && read > 0 ? read : Date.now() };
}

/** Cores used between two snapshots (1.0 = one core fully busy). */
export function coresUsed(a: CpuSnapshot, b: CpuSnapshot): number {
  return (b.cpuNs - a.cpuNs) / 1e6 / Math.max(1, b.at - a.at);
}

/** Memory the container uses now, without page cache (what the OOM killer counts), MiB. */
export async function memoryMiB(c: Docker.Container): Promise<number> {
  const s = (await c.stats({ stream: false })) as unknown as DockerStats;
  const cache = s.memory_stats.stats?.total_inactive_file ?? s.memory_stats.stats?.inactive_file ?? 0;
  return ((s.memory_stats.usage ?? 0) - cache) / 1024 / 1024;
}
