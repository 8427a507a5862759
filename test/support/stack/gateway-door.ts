import type { TimeSpec } from '../../../services/common/knock/sequence';
import type { Stack } from './stack';

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

export async function gatewayKnockSpec(stack: Stack): Promise<TimeSpec> {
  const env = Object.fromEntries(((await stack.inspect('gateway')).Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
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
