import type Docker from 'dockerode';
import { randomInt } from 'node:crypto';
import { sequenceToSend, windowOf, type TimeSpec } from '../../../services/common/knock/sequence';
import { setTimeout as sleep } from 'node:timers/promises';
import { execIn, type Stack } from './stack';

/**
 * What a test needs to watch the gateway's door in a running stack: its metrics (the
 * metrics port is internal, so they are read from inside the container), the time-based
 * knock it runs with (secret included, as the broker has it: tests compute right knocks
 * as positive controls), and the JSON lines of a service's log.
 */

export async function gatewayMetrics(stack: Stack): Promise<string> {
  const res = await stack.exec('gateway', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
  if (res.exitCode !== 0 || !res.stdout.includes('# HELP')) throw new Error(`cannot read the gateway's metrics (exit ${res.exitCode}): ${res.stderr.slice(0, 500)}`);
  return res.stdout;
}

/** The sum of a metric's samples whose label set contains `labels` (e.g. 'outcome="replay"'). */
export function metricValue(text: string, name: string, labels = ''): number {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\d+(?:\\.\\d+)?)$`, 'gm'))].filter((m) => (m[1] ?? '').includes(labels)).reduce((a, m) => a + Number(m[2]), 0);
}

/** The environment the gateway container runs with, as name → value. */
async function gatewayEnv(stack: Stack): Promise<Record<string, string>> {
  return Object.fromEntries(((await stack.inspect('gateway')).Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

export async function gatewayKnockSpec(stack: Stack): Promise<TimeSpec> {
  const env = await gatewayEnv(stack);
  if (env.KNOCK_MODE !== 'time') throw new Error(`the gateway runs KNOCK_MODE=${env.KNOCK_MODE}, not time`);
  const [rangeStart, rangeEnd] = env.KNOCK_PORT_RANGE!.split('-').map(Number) as [number, number];
  const secret = await stack.exec('gateway', ['cat', env.KNOCK_SECRET_FILE!]);
  if (secret.exitCode !== 0) throw new Error(`cannot read the knock secret: ${secret.stderr}`);
  return { mode: 'time', secret: Buffer.from(secret.stdout.trim(), 'utf8'), length: Number(env.KNOCK_LENGTH), rangeStart, rangeEnd, periodMs: Number(env.KNOCK_PERIOD_SECONDS) * 1000 };
}

export type LogEntry = Record<string, unknown> & { message?: string };

/** The JSON lines of a service's log; lines that are not JSON (from child processes) are skipped. */
export async function logEntries(stack: Stack, service: string): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for (const line of (await stack.logs(service)).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogEntry);
    } catch {
      // a line cut by the log driver
    }
  }
  return out;
}

/**
 * A right knock for now whose nonce no knock has used in the current window, by the
 * gateway's own record of used knocks (KNOCK_REPLAY_FILE, replay-store.ts). For a test that
 * must send one sequence twice, from two addresses, so cannot draw again after a refusal:
 * a random nonce repeats one the brokers used in the window about once in range ÷ knocks.
 */
export async function unusedSequence(stack: Stack, spec: TimeSpec): Promise<number[]> {
  const file = (await gatewayEnv(stack)).KNOCK_REPLAY_FILE ?? '/var/lib/nonstop/knock/replay.json';
  const read = await stack.exec('gateway', ['cat', file]);
  if (read.exitCode !== 0) throw new Error(`cannot read the gateway's used knocks ${file}: ${read.stderr}`);
  const record = JSON.parse(read.stdout) as { burnt: [number, number, number][] };
  const now = Date.now();
  const used = new Set(record.burnt.filter(([window]) => window === windowOf(spec, now)).map(([, nonce]) => nonce));
  const free = Array.from({ length: spec.rangeEnd - spec.rangeStart + 1 }, (_, nonce) => nonce).filter((nonce) => !used.has(nonce));
  return sequenceToSend(spec, now, free[randomInt(free.length)]);
}

/** How many knocks the gateway has logged accepted from this address so far. */
export async function knocksAcceptedFrom(stack: Stack, ip: string): Promise<number> {
  return (await logEntries(stack, 'gateway')).filter((e) => e.message === 'knock accepted; ssh window open' && e.src === ip).length;
}

/**
 * A right knock from a probe container that the gateway is seen to accept (its log line for
 * the probe's address), drawn again when it is not, at most `tries` times. A knock's nonce
 * is drawn at random, as a broker draws it, from the knock range; one that a broker or an
 * earlier knock already used in the same window is refused as a replay (door.ts), about one
 * knock in range ÷ knocks-per-window. A test whose subject lies behind the door draws again
 * as a broker does, instead of reading that refusal as its own result. `ipv6` knocks over
 * IPv6 (gatewayIp and probeIp are then IPv6 addresses, probeIp as the gateway writes it).
 * Returns how many knocks it took and the ports of the last one sent (the one accepted,
 * unless an earlier one's acceptance was logged late).
 */
export async function knockUntilOpen(
  stack: Stack,
  probe: Docker.Container,
  spec: TimeSpec,
  gatewayIp: string,
  probeIp: string,
  opts: { tries?: number; ipv6?: boolean } = {},
): Promise<{ knocks: number; ports: number[] }> {
  const tries = opts.tries ?? 3;
  const accepted = (): Promise<number> => knocksAcceptedFrom(stack, probeIp);
  const before = await accepted();
  for (let attempt = 1; attempt <= tries; attempt++) {
    const ports = sequenceToSend(spec, Date.now());
    const sent = await execIn(stack.docker, probe, ['knock', ...(opts.ipv6 ? ['-6'] : []), '-d', '10', gatewayIp, ...ports.map(String)], { timeoutMs: 60_000 });
    if (sent.exitCode !== 0) throw new Error(`knock from ${probeIp} failed (exit ${sent.exitCode}): ${sent.stderr}`);
    // 10 s: each look is a `docker logs` of the whole gateway log, and on a busy 2-core
    // machine the gateway's line can trail the knock by seconds; a late acceptance of this
    // knock still counts on the next attempt (the count is from before the first).
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
      if ((await accepted()) > before) return { knocks: attempt, ports };
    }
  }
  const lines = (await logEntries(stack, 'gateway')).filter((e) => e.src === probeIp).slice(-5);
  throw new Error(`${tries} right knocks from ${probeIp} and the gateway logged none accepted; its last lines for that address: ${JSON.stringify(lines)}`);
}
