import type Docker from 'dockerode';
import { cpus } from 'node:os';
import { ApiClient, createToken } from '../test/support/stack/api-client';
import type { ComposeSpec } from '../test/support/stack/compose-config';
import { testImages, TEST_TAG } from '../test/support/stack/fixture';
import { docker } from '../test/support/stack/docker';
import { execIn, Stack } from '../test/support/stack/stack';
import { waitFor } from '../test/support/wait';
import { coresUsed, cpuSnapshot } from './container-stats';

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
  seconds: number;
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
}

export interface LoadResult {
  seconds: number;
  sent: number;
  ok: number;
  statuses: Record<string, number>;
  okPerSecond: number;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null; mean: number | null };
  /** [start, end, status] per request, epoch ms (with `timeline`). */
  timeline?: [number, number, number][];
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
    seconds: o.seconds,
    warmupSeconds: o.warmupSeconds ?? 0,
    concurrency: o.concurrency ?? 32,
    ...(o.rate !== undefined ? { rate: o.rate } : {}),
    timeoutMs: o.timeoutMs ?? 30_000,
    keepAlive: o.keepAlive ?? true,
    timeline: o.timeline ?? false,
    ...(o.stopWhenRecovered !== undefined ? { stopWhenRecovered: o.stopWhenRecovered } : {}),
  };
  const res = await execIn(stack.docker, t.client, ['node', '/usr/local/bin/load', JSON.stringify(options)], { timeoutMs: ((o.warmupSeconds ?? 0) + o.seconds + 90) * 1000 });
  if (res.exitCode !== 0) throw new Error(`load.js (${t.label}) failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as LoadResult;
}

/** CPU time the whole machine has spent busy so far (ms, all cores), and when. */
function hostBusy(): { busyMs: number; at: number } {
  const busyMs = cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0);
  return { busyMs, at: Date.now() };
}

/**
 * Runs `during` and reports the CPU cores each watched container used meanwhile, and
 * (`host`) how many of the machine's cores were busy with anything at all.
 */
export async function withCpu<T>(watch: Record<string, Docker.Container>, during: () => Promise<T>): Promise<{ result: T; cores: Record<string, number> }> {
  const names = Object.keys(watch);
  const before = await Promise.all(names.map((n) => cpuSnapshot(watch[n]!)));
  const host0 = hostBusy();
  const result = await during();
  const host1 = hostBusy();
  const after = await Promise.all(names.map((n) => cpuSnapshot(watch[n]!)));
  const cores = Object.fromEntries(names.map((n, i) => [n, Math.round(coresUsed(before[i]!, after[i]!) * 100) / 100]));
  const host = (host1.busyMs - host0.busyMs) / Math.max(1, host1.at - host0.at);
  const ours = Object.values(cores).reduce((a, b) => a + b, 0);
  cores[`machine (of ${cpus().length})`] = Math.round(host * 100) / 100;
  // Docker, the kernel's network path, and whatever else runs on the machine.
  cores.rest = Math.round((host - ours) * 100) / 100;
  return { result, cores };
}

/** "gateway 0.91, broker 0.42, ..." */
export function coresText(cores: Record<string, number>): string {
  return Object.entries(cores)
    .map(([n, c]) => `${n} ${c}`)
    .join(', ');
}

/** The answers that were not the expected success, e.g. "{503: 4}", or "none". */
export function errorsText(r: LoadResult, expected: number): string {
  const bad = Object.entries(r.statuses).filter(([s]) => Number(s) !== expected);
  return bad.length === 0 ? 'none' : bad.map(([s, n]) => `${s === '0' ? 'no answer' : s}×${n}`).join(' ');
}
