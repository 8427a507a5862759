import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Stack } from './stack';

/**
 * What a service's memory cgroup and Docker say about it under an attack: its limit, the
 * peak the kernel recorded, how often it hit the limit, OOM kills inside it, and restarts.
 * The overload and slow-body tests assert on these; cgroup v1, as on these hosts.
 */
export interface MemoryFigures {
  limit: number;
  peak: number;
  failcnt: number;
  oomKills: number;
}

/** The service's memory cgroup as the container sees it (v1: its own cgroup is mounted there). */
export async function memoryFigures(stack: Stack, service: string): Promise<MemoryFigures> {
  const res = await stack.exec(service, [
    'sh',
    '-c',
    'cd /sys/fs/cgroup/memory && cat memory.limit_in_bytes memory.max_usage_in_bytes memory.failcnt && sed -n "s/^oom_kill //p" memory.oom_control',
  ]);
  assert.equal(res.exitCode, 0, res.stderr);
  const [limit, peak, failcnt, oomKills] = res.stdout.trim().split('\n').map(Number);
  for (const n of [limit, peak, failcnt, oomKills]) assert.ok(Number.isSafeInteger(n), `unreadable cgroup figures: ${res.stdout}`);
  return { limit: limit!, peak: peak!, failcnt: failcnt!, oomKills: oomKills! };
}

/**
 * The container's memory cgroup directory as the engine's host sees it, or undefined where
 * the test cannot reach it (not on the engine's host, or another cgroup layout).
 */
export async function hostCgroupDir(stack: Stack, service: string): Promise<string | undefined> {
  const pid = (await stack.inspect(service)).State.Pid;
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.split(':')[1]?.split(',').includes('memory'));
    const dir = line && `/sys/fs/cgroup/memory${line.split(':')[2]}`;
    return dir && readFileSync(`${dir}/memory.usage_in_bytes`, 'utf8') ? dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Resets the peak the kernel records for a container, so what is read next is the peak of
 * what follows. Returns whether it could (only from the engine's host); otherwise the peak
 * read later covers the container's whole life, a bound that is only higher.
 */
export function resetPeak(dir: string | undefined): boolean {
  if (!dir) return false;
  writeFileSync(`${dir}/memory.max_usage_in_bytes`, '0');
  return true;
}

export type RestartState = Record<string, { restarts: number; oomKilled: boolean; running: boolean }>;

/** Docker's view of each service: restarts, OOM kill of its main process, running. */
export async function restartState(stack: Stack, services: readonly string[]): Promise<RestartState> {
  const out: RestartState = {};
  for (const s of services) {
    const info = await stack.inspect(s);
    out[s] = { restarts: info.RestartCount, oomKilled: info.State.OOMKilled, running: info.State.Running };
  }
  return out;
}

export const MiB = (n: number): number => Math.round((n / 1024 / 1024) * 10) / 10;

/**
 * What a container's memory is made of during an attack, sampled every 500 ms from the host
 * (nothing runs inside the container for it): its anonymous memory (memory.stat rss, which
 * unlike page cache cannot be reclaimed) and each process's resident set by command name.
 * Reported, not asserted: the assertions use the peak the kernel itself records.
 */
export class CgroupSampler {
  private readonly peak: Record<string, number> = {};
  private running = true;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {}

  start(): void {
    const read = (path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return ''; // a process that has just exited
      }
    };
    this.loop = (async () => {
      while (this.running) {
        const sums: Record<string, number> = { anon: Number(/^rss (\d+)$/m.exec(read(`${this.dir}/memory.stat`))?.[1] ?? 0) };
        for (const pid of read(`${this.dir}/cgroup.procs`).split('\n').filter((p) => p !== '')) {
          const status = read(`/proc/${pid}/status`);
          const name = /^Name:\s+(.*)$/m.exec(status)?.[1];
          const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
          if (name && rss) sums[name] = (sums[name] ?? 0) + Number(rss) * 1024;
        }
        for (const [name, value] of Object.entries(sums)) this.peak[name] = Math.max(this.peak[name] ?? 0, value);
        await sleep(500);
      }
    })();
  }

  /** Peaks in MiB by process name, and `anon` for the cgroup's anonymous memory. */
  async stop(): Promise<Record<string, number>> {
    this.running = false;
    await this.loop;
    return Object.fromEntries(Object.entries(this.peak).map(([k, v]) => [k, MiB(v)]));
  }
}
