import type Docker from 'dockerode';
import { loadavg } from 'node:os';
import { demux, type Stack } from '../test/support/stack/stack';
import { waitFor } from '../test/support/wait';

/** When a container started this time, and when its first passing health check ended. */
export async function startedAndHealthy(c: Docker.Container, since: number, timeoutMs = 60_000): Promise<{ startedAt: number; healthyAt: number }> {
  const info = await waitFor(
    'the container to be healthy',
    async () => {
      const i = await c.inspect();
      return i.State.Health?.Status === 'healthy' && Date.parse(i.State.StartedAt) >= since - 1000 ? i : undefined;
    },
    timeoutMs,
    100,
  );
  const startedAt = Date.parse(info.State.StartedAt);
  const passed = (info.State.Health?.Log ?? []).filter((e) => e.ExitCode === 0 && Date.parse(e.Start) >= startedAt).map((e) => Date.parse(e.End));
  return { startedAt, healthyAt: passed.length > 0 ? Math.min(...passed) : Date.now() };
}

/** The timestamp of the first JSON log line with this message written at or after `since`. */
export async function logLineAt(c: Docker.Container, message: string, since: number, timeoutMs = 30_000): Promise<number> {
  return waitFor(
    `"${message}" in the log`,
    async () => {
      const text = demux(await c.logs({ stdout: true, stderr: true, follow: false, since: Math.floor(since / 1000) - 1 }));
      for (const line of text.split('\n')) {
        if (!line.includes(`"message":"${message}"`)) continue;
        const at = Date.parse((JSON.parse(line) as { timestamp: string }).timestamp);
        if (at >= since) return at;
      }
      return undefined;
    },
    timeoutMs,
    200,
  );
}

/** What else the machine was doing: 1-minute load average and other running containers. */
export async function hostNoise(stack: Stack): Promise<string> {
  const running = await stack.docker.listContainers();
  const others = running.filter((c) => c.Labels['nonstop.test'] !== stack.project).length;
  return `host load avg ${loadavg()[0]!.toFixed(1)}, ${others} other containers running`;
}

/** How many JSON log lines with this message a container wrote in [since, until]. */
export async function countLines(c: Docker.Container, message: string, since: number, until = Infinity): Promise<number> {
  const text = demux(await c.logs({ stdout: true, stderr: true, follow: false, since: Math.floor(since / 1000) - 1 }));
  return text.split('\n').filter((line) => {
    if (!line.includes(`"message":"${message}"`)) return false;
    const at = Date.parse((JSON.parse(line) as { timestamp: string }).timestamp);
    return at >= since && at <= until;
  }).length;
}
