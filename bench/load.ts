import type Docker from 'dockerode';
import { ApiClient, createToken } from '../test/support/stack/api-client';
import type { ComposeSpec } from '../test/support/stack/compose-config';
import { testImages, TEST_TAG } from '../test/support/stack/fixture';
import { docker } from '../test/support/stack/docker';
import { execIn, Stack } from '../test/support/stack/stack';
import { waitFor } from '../test/support/wait';
import { hostWindow, type HostMeter, type HostWindow } from './host';
import type { RunSummary } from './report';
import { latencySamples, percentiles, round } from './stats';

/**
 * The load client of the chain, recovery and footprint benchmarks: bench/tools/load.js,
 * run inside a probe container, aimed either at the gateway (the whole chain) or straight
 * at core's storage service (the baseline) with the broker's client certificate.
 */
export interface Target {
  label: string;
  client: Docker.Container;
  host: string;
  port: number;
  servername: string;
  ca: string;
  cert?: string;
  key?: string;
  /** Core wants an X-Request-Id (the gateway assigns one on the chain). */
  requestId: boolean;
  token: string;
}

export interface LoadOptions {
  method: 'GET' | 'POST';
  path: string;
  /** POST bodies padded to exactly this many bytes (load.js's bodyBytes); unpadded when absent. */
  bodyBytes?: number;
  /** Length of the measured window. */
  seconds: number;
  /** Load before the window, discarded (the window follows without a gap). */
  warmupSeconds?: number;
  concurrency?: number;
  /** Open loop at this many requests/s; closed loop when absent. */
  rate?: number;
  timeoutMs?: number;
  keepAlive?: boolean;
  timeline?: boolean;
  stopWhenRecovered?: number;
  /** Overrides the target's host (e.g. a DNS name that survives a restart). */
  host?: string;
  /** Epoch ms the window starts; load.js warms up until then (see measuredRun). */
  windowStart?: number;
  minWarmupSeconds?: number;
}

/** What bench/tools/load.js reports about the requests that started inside its window. */
export interface LoadResult {
  seconds: number;
  /** Warm-up the client actually had before the window. */
  warmupSeconds: number;
  /** The window, epoch ms. */
  windowStart: number;
  windowEnd: number;
  sent: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  /** Expected answers completed inside the window, per second. */
  okPerSecond: number;
  timeoutMs: number;
  /** Latency of each expected answer, ms, in completion order. */
  okMs: number[];
  /** [start, end, status] per request, epoch ms (with `timeline`). */
  timeline?: [number, number, number][];
}

/** load.js was launched too late to warm up before the planned window (a slow exec on a busy host). */
export class LateStartError extends Error {
  constructor(readonly lateMs: number) {
    super(`load.js started ${lateMs} ms too late for its window`);
    this.name = 'LateStartError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * Raises nginx's per-address request limit (200 r/s, burst 400 by default): the benchmark
 * drives the gateway from one address, which that limit would otherwise cap.
 */
export function benchAdjust(spec: ComposeSpec): void {
  Object.assign(spec.services.gateway!.environment, { RATE_LIMIT_PER_SECOND: '1000000', RATE_LIMIT_BURST: '1000000' });
}

/** Builds (cached) images first, so timing Stack.up measures the start and nothing else. */
export async function benchImages(): ReturnType<typeof testImages> {
  return testImages();
}

export async function benchStack(): Promise<Stack> {
  return Stack.up(docker(), await benchImages(), { tag: TEST_TAG, adjust: benchAdjust });
}

/** Waits until a POST through the chain is stored; returns the record id. */
export async function chainAccepting(api: ApiClient, token: string, timeoutMs = 120_000): Promise<string> {
  return waitFor(
    'the chain to accept a record',
    async () => {
      const res = await api.post('notes', { title: 'bench warm-up' }, token);
      return res.status === 201 ? (res.json as { id: string }).id : undefined;
    },
    timeoutMs,
    100,
  );
}

/** A token for `notes`, a host client, and a record both GET runs can read. */
export async function benchSession(stack: Stack): Promise<{ token: string; api: ApiClient; recordId: string }> {
  const token = await createToken(stack, ['notes']);
  const api = await ApiClient.forStack(stack);
  const recordId = await chainAccepting(api, token);
  return { token, api, recordId };
}

/** A client on `edge` that talks to the gateway the way a user does: HTTPS to :443. */
export async function chainTarget(stack: Stack, token: string): Promise<Target> {
  const client = await stack.probe('edge', { volumes: { 'gateway-keys': '/gw' } });
  return { label: 'chain', client, host: await stack.ip('gateway', 'edge'), port: 443, servername: 'gateway', ca: '/gw/tls/server.crt', requestId: false, token };
}

/** A client on `private` that talks to core as the broker does: mutual TLS to core:8443. */
export async function directTarget(stack: Stack, token: string): Promise<Target> {
  const client = await stack.probe('private', { volumes: { 'broker-keys': '/keys' } });
  return { label: 'direct', client, host: 'core', port: 8443, servername: 'core', ca: '/keys/ca.crt', cert: '/keys/client.crt', key: '/keys/client.key', requestId: true, token };
}

export async function runLoad(stack: Stack, t: Target, o: LoadOptions): Promise<LoadResult> {
  const options = {
    host: o.host ?? t.host,
    port: t.port,
    servername: t.servername,
    ca: t.ca,
    ...(t.cert ? { cert: t.cert, key: t.key } : {}),
    requestId: t.requestId,
    token: t.token,
    method: o.method,
    path: o.path,
    ...(o.bodyBytes !== undefined ? { bodyBytes: o.bodyBytes } : {}),
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds ?? 0,
    ...(o.windowStart !== undefined ? { windowStart: o.windowStart, minWarmupSeconds: o.minWarmupSeconds ?? 0 } : {}),
    concurrency: o.concurrency ?? 32,
    ...(o.rate !== undefined ? { rate: o.rate } : {}),
    timeoutMs: o.timeoutMs ?? 30_000,
    keepAlive: o.keepAlive ?? true,
    timeline: o.timeline ?? false,
    ...(o.stopWhenRecovered !== undefined ? { stopWhenRecovered: o.stopWhenRecovered } : {}),
  };
  const lead = o.windowStart !== undefined ? Math.max(0, o.windowStart - Date.now()) / 1000 : (o.warmupSeconds ?? 0);
  const res = await execIn(stack.docker, t.client, ['node', '/usr/local/bin/load', JSON.stringify(options)], { timeoutMs: (lead + o.seconds + options.timeoutMs / 1000 + 60) * 1000 });
  if (res.exitCode === LATE_EXIT) throw new LateStartError((JSON.parse(res.stdout) as { late: number }).late);
  if (res.exitCode !== 0) throw new Error(`load.js (${t.label}) failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as LoadResult;
}

/** load.js's exit code when launched too late for its window. */
const LATE_EXIT = 3;

/** A run with the machine's counters read at the window's edges. */
export interface Measured {
  result: LoadResult;
  /** Latency samples, ascending: answered requests, and failures at the timeout. */
  latency: number[];
  host: HostWindow;
  /** How far from the window's edges the counters were read, ms (the larger of the two). */
  edgeSkewMs: number;
}

/** A run as the results file keeps it: its figures, rounded, without the raw samples. */
export function runSummary(scenario: string, path: string, round_: number, position: number, m: Measured): RunSummary {
  const p = percentiles(m.latency);
  const r2 = (x: number): number => round(x, 3);
  const h = m.host;
  return {
    scenario,
    path,
    round: round_,
    position,
    windowStart: new Date(m.result.windowStart).toISOString(),
    warmupSeconds: m.result.warmupSeconds,
    okPerSecond: m.result.okPerSecond,
    sent: m.result.sent,
    failed: m.result.failed,
    statuses: m.result.statuses,
    latencyMs: { p50: p.p50, p99: p.p99, p999: p.p999, max: p.max },
    cores: Object.fromEntries(Object.entries(h.ours).map(([k, v]) => [k, r2(v)])),
    coresByProcess: Object.fromEntries(Object.entries(h.oursByProcess).map(([k, of]) => [k, Object.fromEntries(Object.entries(of).map(([comm, v]) => [comm, r2(v)]))])),
    host: {
      other: r2(h.other),
      otherContainers: r2(h.otherContainers),
      otherHost: r2(h.otherHost),
      stealPercent: r2(h.stealFraction * 100),
      engine: r2(h.engine),
      kernel: r2(h.kernel),
      interrupts: r2(h.interrupts),
      loadAvg1: h.loadAvg1,
    },
    edgeSkewMs: r2(m.edgeSkewMs),
  };
}

/**
 * One load run whose window is planned here: it starts `warmupSeconds` after load.js is up
 * (about a second after the exec), and `meter` reads every CPU counter at its start and
 * its end, on timers in this process while the load runs in its container. Both use the
 * machine's clock, so the counters bracket exactly the requests being measured.
 */
export async function measuredRun(stack: Stack, t: Target, o: LoadOptions & { warmupSeconds: number }, meter: HostMeter): Promise<Measured> {
  for (let attempt = 1; ; attempt++) {
    // Time for `docker exec` and Node to start; more after a late start.
    const windowStart = Date.now() + 1000 * attempt + o.warmupSeconds * 1000;
    const windowEnd = windowStart + o.seconds * 1000;
    const edges = Promise.all([meter.snapshotAt(windowStart), meter.snapshotAt(windowEnd)]);
    let result: LoadResult;
    try {
      result = await runLoad(stack, t, { ...o, windowStart, minWarmupSeconds: o.warmupSeconds / 2 });
    } catch (err) {
      await edges;
      if (err instanceof LateStartError && attempt < 3) {
        process.stdout.write(`  ${t.label}: ${err.message}; again with more lead time\n`);
        continue;
      }
      throw err;
    }
    const [a, b] = await edges;
    return {
      result,
      latency: latencySamples(result.okMs, result.failed, result.timeoutMs),
      host: hostWindow(a, b),
      edgeSkewMs: Math.max(Math.abs(a.at - result.windowStart), Math.abs(b.at - result.windowEnd)),
    };
  }
}

/** "gateway 0.91, broker 0.42, ..." */
export function coresText(cores: Record<string, number>): string {
  return Object.entries(cores)
    .map(([n, c]) => `${n} ${c}`)
    .join(', ');
}

/** The answers that were not the expected success, e.g. "503×4", or "none". */
export function errorsText(r: Pick<LoadResult, 'statuses'>, expected: number): string {
  const bad = Object.entries(r.statuses).filter(([s]) => Number(s) !== expected);
  return bad.length === 0 ? 'none' : bad.map(([s, n]) => `${s === '0' ? 'no answer' : s}×${n}`).join(' ');
}
