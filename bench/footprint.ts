import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../test/support/stack/api-client';
import type { ImageSet } from '../test/support/stack/build';
import type { Stack } from '../test/support/stack/stack';
import { memoryMiB } from './container-stats';
import { round } from './stats';
import type { Row } from './report';
import { logLineAt } from './readiness';
import { benchImages, benchStack, chainAccepting, chainTarget, errorsText, runLoad } from './load';

const BASE_IMAGE = 'node:24-bookworm-slim';
const SERVICES = ['gateway', 'broker', 'core'] as const;
const MB = 1e6;

/**
 * Image sizes against node:24-bookworm-slim: the runtime stages start from Debian with the
 * node binary alone, so an image should weigh about that much plus its own tier's code.
 */
export async function imageRows(stack: Stack, images: ImageSet): Promise<Row[]> {
  const base = await stack.docker.getImage(BASE_IMAGE).inspect();
  const standIn = (base.RepoDigests ?? []).length === 0;
  const targets = { gateway: 60, broker: 60, [images.coreTarget]: 120 } as Record<string, number>;
  const rows: Row[] = [];
  for (const [name, tag] of [
    ['gateway', images.gateway],
    ['broker', images.broker],
    [images.coreTarget, images.core],
  ] as const) {
    const size = (await stack.docker.getImage(tag).inspect()).Size;
    const over = (size - base.Size) / MB;
    rows.push({
      scenario: `image ${name}`,
      metric: `MB against ${BASE_IMAGE} (MB = 10⁶ bytes)`,
      value: `${over >= 0 ? '+' : ''}${round(over, 1)} (${round(size / MB, 1)} total)`,
      baseline: `${BASE_IMAGE} ${round(base.Size / MB, 1)}`,
      ratio: round(size / base.Size),
      target: `≤ +${targets[name]} MB`,
      met: over <= targets[name]!,
      note: `docker image inspect Size, uncompressed; runtime stages are debian:bookworm-slim + the node binary + the tier's own modules and packages (no npm, npx, corepack, headers)${standIn ? `; ${BASE_IMAGE} here is the offline stand-in scripts/bootstrap.sh builds (no registry digest)` : ''}`,
    });
  }
  return rows;
}

async function memories(stack: Stack): Promise<Record<string, number>> {
  const values = await Promise.all(SERVICES.map((s) => memoryMiB(stack.container(s))));
  return Object.fromEntries(SERVICES.map((s, i) => [s, values[i]!]));
}

/** Idle memory of each tier next to its peak during a closed-loop POST load on the chain. */
export async function memoryRows(stack: Stack, token: string, seconds: number): Promise<Row[]> {
  await sleep(10_000);
  const idle = await memories(stack);
  const client = await chainTarget(stack, token);
  const peak: Record<string, number> = { ...idle };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const m = await memories(stack);
      for (const s of SERVICES) peak[s] = Math.max(peak[s]!, m[s]!);
      await sleep(500);
    }
  })();
  const run = await runLoad(stack, client, { method: 'POST', path: '/v1/records/notes', seconds, warmupSeconds: 3, concurrency: 32 }).finally(() => {
    sampling = false;
  });
  await sampler;
  const limits = Object.fromEntries(SERVICES.map((s) => [s, stack.spec.services[s]!.memoryBytes]));
  return SERVICES.map((s) => ({
    scenario: `${s} container memory`,
    metric: 'MiB, peak under load (without page cache)',
    value: `${round(peak[s]!, 1)}`,
    baseline: `idle ${round(idle[s]!, 1)}`,
    ratio: round(peak[s]! / idle[s]!),
    note: `load: ${seconds} s of POSTs through the chain, 32 connections, ${run.okPerSecond} req/s, errors ${errorsText(run, 201)}; sampled about every 1.5 s (a stats read takes ~1 s); mem_limit ${round((limits[s] ?? NaN) / 2 ** 20)} MiB`,
  }));
}

/**
 * The same stack started a second time (volumes, keys and data in place), in the same
 * order and with the same health gating as the first start: core and gateway, both
 * healthy, then the broker, healthy. What the cold start takes beyond this is first-start
 * work (networks, volumes, key generation, database initialisation).
 */
export async function warmStart(stack: Stack, token: string): Promise<Started> {
  for (const s of ['broker', 'gateway', 'core']) await stack.container(s).stop();
  const t0 = Date.now();
  await Promise.all([stack.container('core').start(), stack.container('gateway').start()]);
  await Promise.all([stack.waitHealthy('core'), stack.waitHealthy('gateway')]);
  await stack.container('broker').start();
  await stack.waitHealthy('broker');
  const healthyMs = Date.now() - t0;
  // The chain works again (the gateway's host port changed with its start).
  await chainAccepting(await ApiClient.forStack(stack), token);
  return { healthyMs, ...(await milestones(stack, t0)) };
}

interface Started {
  healthyMs: number;
  /** When the broker logged its tunnel up: from then on the chain can serve. */
  tunnelMs: number;
  /** "core ready 3.1, ..." (seconds) from the containers' own log lines. */
  milestones: string;
}

/** When each tier logged that it is ready (and the broker its tunnel), after t0. */
async function milestones(stack: Stack, t0: number): Promise<Omit<Started, 'healthyMs'>> {
  const lines: [string, string][] = [
    ['core', 'core ready'],
    ['gateway', 'gateway ready'],
    ['broker', 'broker ready'],
    ['broker', 'tunnel up'],
  ];
  const at: number[] = [];
  for (const [service, message] of lines) at.push((await logLineAt(stack.container(service), message, t0)) - t0);
  return { tunnelMs: at[3]!, milestones: lines.map(([, message], i) => `${message} ${round(at[i]! / 1000, 1)}`).join(', ') };
}

const sec = (msValue: number): number => round(msValue / 1000, 1);

export function startRows(cold: Started, warm: Started): Row[] {
  const what =
    'cold = Stack.up() from nothing: networks, volumes, keygen, first database start; ' +
    'warm = the same containers stopped and started again in the same order with the same health gating (core and gateway healthy, then the broker)';
  return [
    {
      scenario: 'stack start (keygen, core, gateway, broker), images already built',
      metric: 'seconds to all healthy',
      value: `cold ${sec(cold.healthyMs)}`,
      baseline: `warm ${sec(warm.healthyMs)}`,
      ratio: round(cold.healthyMs / warm.healthyMs),
      note: `${what}. Health checks run every 5 s, so "healthy" lags readiness by up to 5 s per gated step (two steps here); a POST through the chain succeeded right after, both times`,
    },
    {
      scenario: 'stack start to the chain able to serve',
      metric: 'seconds to the broker\'s "tunnel up" log line',
      value: `cold ${sec(cold.tunnelMs)}`,
      baseline: `warm ${sec(warm.tunnelMs)}`,
      ratio: round(cold.tunnelMs / warm.tunnelMs),
      note: `same two starts; log lines, s after the start: cold ${cold.milestones}; warm ${warm.milestones}. The broker starts only once core and gateway report healthy`,
    },
  ];
}

export async function coldStart(up: () => Promise<Stack>): Promise<Started & { stack: Stack; token: string }> {
  const t0 = Date.now();
  const stack = await up();
  const healthyMs = Date.now() - t0;
  try {
    const token = await createToken(stack, ['notes']);
    await chainAccepting(await ApiClient.forStack(stack), token);
    return { stack, healthyMs, token, ...(await milestones(stack, t0)) };
  } catch (err) {
    await stack.down();
    throw err;
  }
}

/** Image sizes, memory idle and under load, and the stack's start, cold and warm. */
export async function footprintBench(loadSeconds: number): Promise<Row[]> {
  const images = await benchImages();
  const cold = await coldStart(benchStack);
  const { stack, token } = cold;
  try {
    const rows = await imageRows(stack, images);
    rows.push(...(await memoryRows(stack, token, loadSeconds)));
    rows.push(...startRows(cold, await warmStart(stack, token)));
    return rows;
  } finally {
    await stack.down();
  }
}
