import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Stack } from '../test/support/stack/stack';
import { busyThresholds, MIN_REPORTED_CURVE_ROUNDS, quietWait, type BenchConfig } from './config';
import { conntrack, containerMemoryMiB, flood, knockFigures, sampleSniffer, snifferCores, snifferPids, type ProcSample } from './curves-knock';
import { curvePoints, errorsBelowPeak, errorsText, planCurve, planSources, spreadOf, summarisePoint, type PointRun, type PointSummary } from './curves-plan';
import { BLOBS_COLLECTION, BROKERS, curvesStack, gateway2Target, keepBrokers, waitForBrokers, type CurvesStack } from './curves-stack';
import { busyReasons, HostBusyError, HostMeter, hostWindow, quietCheck, windowText, worstOf, type HostWindow } from './host';
import { createToken } from '../test/support/stack/api-client';
import { benchSession, chainTarget, directTarget, LateStartError, measuredRun, runLoad, runSummary, type LoadOptions, type LoadResult, type Measured, type Target } from './load';
import type { CurveTable, RunSummary, SectionResult } from './report';
import { fig, latencySamples, pooled, round, spreadText } from './stats';

/**
 * Scale curves (issue 13.4): throughput and p99 against body size, connections, brokers and
 * gateways, and the knock sniffer's CPU and memory against tracked sources and SYN rate.
 * One stack (curves-stack.ts) serves every curve. Each point runs in every round; each run
 * is a warm-up and a measured window at whose edges every container's cgroup CPU counter is
 * read (load.measuredRun), and a run whose window saw other work past the limits is run
 * again (its whole step, so the sides of a point stay paired), a few times at most, before
 * the section refuses, as the chain section does.
 */

/** How late the counters may be read at a window's edge before the run counts as disturbed (as in chain.ts). */
const MAX_EDGE_SKEW_MS = 25;
/** Spoofed sources for the knock curves: test-only ranges, one for each curve. */
const SOURCES_CIDR = '10.224.0.0/12';
const RATE_CIDR = '10.240.0.0/12';
/** The sources of the SYN rate curve, sent round and round (the same flows each time). */
const RATE_POOL = 1000;
/** Knock settings of the sniffer under test (gateway2) for the source curve. */
const KNOCK_STEP_TIMEOUT_MS = 60_000;
const KNOCK_SEQUENCE_TIMEOUT_MS = 120_000;
/** gateway2's memory limit: room for the largest source count (compose.yaml gives a gateway 256 MiB). */
const KNOCK_MEMORY_BYTES = 1024 * 2 ** 20;
/** Seconds after each knock step in which the sniffer's CPU with the sources held is measured. */
const KNOCK_PAUSE_SECONDS = 2;
/**
 * The share of the host's connection tracking table the spoofed flows may take. Docker's
 * bridges pass through the host's netfilter (br_netfilter), which keeps an entry per flow
 * for two minutes; a full table drops every new connection on the machine, other people's
 * included. Flows are the same ones again in later rounds (synflood's distinct mode), so
 * the worst case is twice this share.
 */
const CONNTRACK_SHARE = 0.4;
const KNOCK_PORTS = '40000-40999';
/** Longer than the gateway's 1 s refresh of its knock gauges, and than the sniffer's catching up after a flood. */
const SETTLE_MS = 1500;

const EXPECTED = { POST: 201, GET: 200 } as const;
type Method = keyof typeof EXPECTED;

interface Ctx {
  c: BenchConfig;
  cs: CurvesStack;
  stack: Stack;
  token: string;
  recordId: string;
  targets: { chain: Target; chain2: Target; direct: Target };
  /** The first gateway's client with a token for the body curve's collection. */
  blobs: Target;
  flooder: Docker.Container;
  meter: HostMeter;
  retriesLeft: number;
  discarded: string[];
  keptBusy: string[];
  windows: HostWindow[];
  skews: number[];
  runs: RunSummary[];
}

export async function curvesBench(c: BenchConfig): Promise<SectionResult> {
  const maxSources = Math.max(...c.BENCH_CURVES_KNOCK_SOURCES);
  const knockEnv = {
    KNOCK_MAX_SOURCES: String(Math.min(10_000_000, maxSources + 65_536)),
    KNOCK_STEP_TIMEOUT_MS: String(KNOCK_STEP_TIMEOUT_MS),
    KNOCK_SEQUENCE_TIMEOUT_MS: String(KNOCK_SEQUENCE_TIMEOUT_MS),
  };
  const cs = await curvesStack({ env: knockEnv, memoryBytes: KNOCK_MEMORY_BYTES });
  try {
    const stack = cs.stack;
    await waitForBrokers(stack, BROKERS.length);
    const { token, recordId } = await benchSession(stack);
    const targets = { chain: await chainTarget(stack, token), chain2: await gateway2Target(cs, token), direct: await directTarget(stack, token) };
    const flooder = await stack.probe('edge');
    const blobs = { ...targets.chain, label: 'chain (blobs)', token: await createToken(stack, [BLOBS_COLLECTION]) };
    const ctx: Ctx = { c, cs, stack, token, recordId, targets, blobs, flooder, meter: await meterFor(stack, targets, flooder), retriesLeft: c.BENCH_BUSY_RETRIES, discarded: [], keptBusy: [], windows: [], skews: [], runs: [] };
    const unreported: string[] = [];
    if (c.BENCH_CURVES_ROUNDS < MIN_REPORTED_CURVE_ROUNDS) unreported.push(`${c.BENCH_CURVES_ROUNDS} rounds per point (at least ${MIN_REPORTED_CURVE_ROUNDS} are published)`);
    const thresholds = busyThresholds(c);
    const before = await quietCheck(ctx.meter, thresholds, c.BENCH_QUIET_SECONDS, quietWait(c));
    if (before.reasons.length > 0) {
      if (!c.BENCH_ALLOW_BUSY) throw new HostBusyError('before the curves section (stack idle)', before.reasons);
      unreported.push(`host busy before the curves: ${before.reasons.join('; ')}`);
    }
    const curves: CurveTable[] = [];
    const timed = async (name: string, f: () => Promise<CurveTable[]>): Promise<void> => {
      const t0 = Date.now();
      const tables = await f();
      const seconds = Math.round((Date.now() - t0) / 1000);
      for (const t of tables) t.notes.push(`This curve's part of the section took ${seconds} s.`);
      curves.push(...tables);
      process.stdout.write(`  curves: ${name} took ${seconds} s\n`);
    };
    // Brokers are only ever stopped: 3, 2, then 1 broker, which the other curves then use.
    await timed('brokers × gateways', async () => [await scaleCurve(ctx)]);
    await timed('body size', async () => [await bodyCurve(ctx)]);
    await timed('connections', async () => [await connectionsCurve(ctx, 'POST'), await connectionsCurve(ctx, 'GET')]);
    await timed('knock sniffer', async () => knockCurves(ctx));

    if (ctx.keptBusy.length > 0) {
      const worst = worstOf(ctx.windows);
      unreported.push(`host busy in ${ctx.keptBusy.length} steps (worst window: other work ${round(worst.other)} cores, steal ${round(worst.stealFraction * 100, 1)} %)`);
    }
    const worst = worstOf(ctx.windows);
    const notes = [
      `Method: ${c.BENCH_CURVES_ROUNDS} rounds per point — fewer than the chain section's ${c.BENCH_CHAIN_ROUNDS}, since every curve has several points (at least ${MIN_REPORTED_CURVE_ROUNDS} are published). ` +
        `Points go up in one round and down in the next; the sides of a point (chain, straight to core) take turns in a rotating order. ` +
        `Each HTTP run is ${c.BENCH_WARMUP_SECONDS} s of warm-up and a ${c.BENCH_CURVES_SECONDS} s closed-loop window (bench/tools/load.js in a probe container, keep-alive HTTPS, a unique record per POST). ` +
        `A failed request (any other status, a reset, no answer within ${c.BENCH_TIMEOUT_MS / 1000} s) is a latency sample of ${c.BENCH_TIMEOUT_MS / 1000} s. ` +
        `Throughput is median [min–max] over rounds; p99 is given per round, median [min–max] over the rounds with at least 1,000 samples (10 beyond the p99; "—" when none has), and pooled over every round's samples.`,
      `The stack: compose.yaml's services with the benchmark's raised per-address request limit (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST: one load client is one address), plus gateway2 (keys from keygen run once more for it) and broker2, broker3 (the broker's identity, each with its own Redis), every broker serving both gateways. ` +
        `The brokers' schema directory has one bench-only collection more (the body curve's). gateway2's knock settings and memory limit are raised for the knock curves (below). ` +
        `Everything else is compose.yaml's default: MAX_BODY_BYTES 1 MiB (nginx's client_max_body_size is the same figure), so a 1 MiB body is within the limit and no limit was raised; MAX_PENDING_REQUESTS 128 and MAX_PENDING_BYTES 8 MiB, past which the gateway answers 503 overloaded at once.`,
      `CPU: each container's cgroup counter (cgroup v${ctx.meter.cgroupVersion}) and /proc/stat, read at the two edges of every measured window (at most ${round(Math.max(0, ...ctx.skews), 1)} ms from the edges; a run read more than ${MAX_EDGE_SKEW_MS} ms late counts as disturbed). ` +
        `All tiers, the load clients and the SYN sender share this machine's ${ctx.windows[0]?.cores ?? '?'} cores.`,
      `Busy host: a step counts only when, over each of its windows, other work (containers not in this benchmark, host processes other than the Docker engine, kernel threads and this benchmark) used at most ${thresholds.maxOtherCores} cores and steal stayed at or below ${thresholds.maxStealFraction * 100} %; ` +
        `the stack was measured idle for ${c.BENCH_QUIET_SECONDS} s before the first step (${windowText(before.window)}). ` +
        `Worst window: other work ${round(worst.other)} cores, steal ${round(worst.stealFraction * 100, 1)} %, Docker engine ${round(worst.engine)}, kernel threads ${round(worst.kernel)}. ` +
        `Steps discarded as busy and run again (at most ${c.BENCH_BUSY_RETRIES}): ${ctx.discarded.length === 0 ? 'none' : ctx.discarded.join('; ')}.` +
        (ctx.keptBusy.length > 0 ? ` Kept although busy (BENCH_ALLOW_BUSY): ${ctx.keptBusy.join('; ')}.` : ''),
      `Settings: BENCH_CURVES_ROUNDS=${c.BENCH_CURVES_ROUNDS}, BENCH_CURVES_SECONDS=${c.BENCH_CURVES_SECONDS}, BENCH_WARMUP_SECONDS=${c.BENCH_WARMUP_SECONDS}, BENCH_TIMEOUT_MS=${c.BENCH_TIMEOUT_MS}, ` +
        `BENCH_CURVES_BODY_BYTES=${c.BENCH_CURVES_BODY_BYTES.join(',')}, BENCH_CURVES_BODY_CONNECTIONS=${c.BENCH_CURVES_BODY_CONNECTIONS}, BENCH_CURVES_CONNECTIONS=${c.BENCH_CURVES_CONNECTIONS.join(',')}, ` +
        `BENCH_CURVES_BROKERS=${c.BENCH_CURVES_BROKERS.join(',')}, BENCH_CURVES_GATEWAYS=${c.BENCH_CURVES_GATEWAYS.join(',')}, BENCH_CURVES_SCALE_CONNECTIONS=${c.BENCH_CURVES_SCALE_CONNECTIONS}, ` +
        `BENCH_CURVES_KNOCK_SOURCES=${c.BENCH_CURVES_KNOCK_SOURCES.join(',')}, BENCH_CURVES_KNOCK_SOURCE_RATE=${c.BENCH_CURVES_KNOCK_SOURCE_RATE}, BENCH_CURVES_SYN_RATES=${c.BENCH_CURVES_SYN_RATES.join(',')}, BENCH_CURVES_SYN_SECONDS=${c.BENCH_CURVES_SYN_SECONDS}; ` +
        `gateway2 (the knock subject) with ${Object.entries(knockEnv).map(([k, v]) => `${k}=${v}`).join(', ')} and a ${KNOCK_MEMORY_BYTES / 2 ** 20} MiB memory limit (compose.yaml: 256 MiB).`,
    ];
    return { curves, notes, unreported, runs: ctx.runs };
  } finally {
    await cs.down();
  }
}

/** A meter over every container of the stack that runs now (stopped brokers have no cgroup to read). */
async function meterFor(stack: Stack, targets: Ctx['targets'], flooder: Docker.Container): Promise<HostMeter> {
  const watch: Record<string, Docker.Container> = {};
  for (const s of ['gateway', 'gateway2', 'core', ...BROKERS]) {
    if ((await stack.inspect(s)).State.Running) watch[s] = stack.container(s);
  }
  Object.assign(watch, { 'edge client': targets.chain.client, 'gateway2 client': targets.chain2.client, 'private client': targets.direct.client, flooder });
  return HostMeter.create(stack.docker, watch);
}

/**
 * Runs one step (every side of a point in a round) until it is not disturbed: a window that
 * saw a busy host, or counters read late, discards the step and runs it again after a
 * quiet window, BENCH_BUSY_RETRIES times in the whole section at most; then it refuses.
 */
async function step<T extends { host: HostWindow; edgeSkewMs: number }>(ctx: Ctx, name: string, run: () => Promise<T[]>): Promise<T[]> {
  const thresholds = busyThresholds(ctx.c);
  for (;;) {
    const got = await run();
    const busy = got.flatMap((m) => [...busyReasons(m.host, thresholds), ...(m.edgeSkewMs > MAX_EDGE_SKEW_MS ? [`counters read ${round(m.edgeSkewMs)} ms after a window edge (> ${MAX_EDGE_SKEW_MS})`] : [])]);
    if (busy.length > 0 && !ctx.c.BENCH_ALLOW_BUSY) {
      if (ctx.retriesLeft === 0) throw new HostBusyError(`during ${name} (${ctx.c.BENCH_BUSY_RETRIES} busy steps already run again)`, busy);
      ctx.retriesLeft--;
      ctx.discarded.push(`${name} (${busy.join('; ')})`);
      process.stdout.write(`  ${name}: host busy (${busy.join('; ')}); again after a quiet window\n`);
      const quiet = await quietCheck(ctx.meter, thresholds, ctx.c.BENCH_QUIET_SECONDS, quietWait(ctx.c));
      if (quiet.reasons.length > 0) throw new HostBusyError(`after a busy step of ${name}`, quiet.reasons);
      continue;
    }
    if (busy.length > 0) ctx.keptBusy.push(name);
    for (const m of got) {
      ctx.windows.push(m.host);
      ctx.skews.push(m.edgeSkewMs);
    }
    return got;
  }
}

/**
 * Several load clients at once, one window for all (the load spread over gateways): each
 * load.js warms up until the same planned start, and the counters are read at its edges.
 */
async function measuredTogether(ctx: Ctx, parts: { target: Target; opts: LoadOptions }[]): Promise<Measured> {
  if (parts.length === 1) return measuredRun(ctx.stack, parts[0]!.target, { ...parts[0]!.opts, warmupSeconds: ctx.c.BENCH_WARMUP_SECONDS }, ctx.meter);
  for (let attempt = 1; ; attempt++) {
    const windowStart = Date.now() + 1000 * attempt + ctx.c.BENCH_WARMUP_SECONDS * 1000;
    const seconds = parts[0]!.opts.seconds;
    const edges = Promise.all([ctx.meter.snapshotAt(windowStart), ctx.meter.snapshotAt(windowStart + seconds * 1000)]);
    let results: LoadResult[];
    try {
      results = await Promise.all(parts.map((p) => runLoad(ctx.stack, p.target, { ...p.opts, warmupSeconds: ctx.c.BENCH_WARMUP_SECONDS, windowStart, minWarmupSeconds: ctx.c.BENCH_WARMUP_SECONDS / 2 })));
    } catch (err) {
      await edges;
      if (err instanceof LateStartError && attempt < 3) continue;
      throw err;
    }
    const [a, b] = await edges;
    const statuses: Record<string, number> = {};
    for (const r of results) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
    const first = results[0]!;
    const result: LoadResult = {
      ...first,
      sent: results.reduce((s, r) => s + r.sent, 0),
      ok: results.reduce((s, r) => s + r.ok, 0),
      failed: results.reduce((s, r) => s + r.failed, 0),
      statuses,
      okPerSecond: round(results.reduce((s, r) => s + r.okPerSecond, 0), 1),
      okMs: results.flatMap((r) => r.okMs),
    };
    return {
      result,
      latency: pooled(results.map((r) => latencySamples(r.okMs, r.failed, r.timeoutMs))),
      host: hostWindow(a, b),
      edgeSkewMs: Math.max(...results.map((r) => Math.max(Math.abs(a.at - r.windowStart), Math.abs(b.at - r.windowEnd)))),
    };
  }
}

function record(ctx: Ctx, scenario: string, path: string, roundNo: number, position: number, m: Measured): void {
  ctx.runs.push(runSummary(scenario, path, roundNo, position, m));
}

const asRun = (m: Measured): PointRun => ({ okPerSecond: m.result.okPerSecond, latency: m.latency, statuses: m.result.statuses });

/** "p99 rounds (pooled)": "12.3 [10.1–15] (13.0)". */
const p99Text = (s: PointSummary): string => `${spreadOf(s.p99Rounds)} (${fig(s.p99Pooled)})`;

function loadOpts(ctx: Ctx, method: Method, concurrency: number, bodyBytes?: number): LoadOptions {
  return {
    method,
    path: bodyBytes !== undefined ? `/v1/records/${BLOBS_COLLECTION}` : method === 'POST' ? '/v1/records/notes' : `/v1/records/notes/${ctx.recordId}`,
    seconds: ctx.c.BENCH_CURVES_SECONDS,
    concurrency,
    timeoutMs: ctx.c.BENCH_TIMEOUT_MS,
    ...(bodyBytes !== undefined ? { bodyBytes } : {}),
  };
}

/** Throughput and p99 against brokers (1–3) and gateways (1–2), POST through the chain. */
async function scaleCurve(ctx: Ctx): Promise<CurveTable> {
  const { c } = ctx;
  const brokers = curvePoints(c.BENCH_CURVES_BROKERS);
  const gateways = curvePoints(c.BENCH_CURVES_GATEWAYS);
  const runs = new Map<string, Measured[]>();
  const key = (b: number, g: number): string => `${b}×${g}`;
  // Brokers are stopped one by one, so they go down: 3, 2, 1.
  for (const b of [...brokers].reverse()) {
    await keepBrokers(ctx.stack, b);
    ctx.meter = await meterFor(ctx.stack, ctx.targets, ctx.flooder);
    for (const s of planCurve([b], gateways, c.BENCH_CURVES_ROUNDS)) {
      const name = `brokers ${b}, round ${s.round + 1}`;
      const got = await step(ctx, name, async () => {
        const out: Measured[] = [];
        for (const g of s.sides) {
          const per = Math.floor(c.BENCH_CURVES_SCALE_CONNECTIONS / g);
          const parts = [ctx.targets.chain, ctx.targets.chain2].slice(0, g).map((target) => ({ target, opts: loadOpts(ctx, 'POST', per) }));
          out.push(await measuredTogether(ctx, parts));
        }
        return out;
      });
      s.sides.forEach((g, i) => {
        runs.set(key(b, g), [...(runs.get(key(b, g)) ?? []), got[i]!]);
        record(ctx, `scale: ${b} brokers, ${g} gateways`, 'chain', s.round + 1, i + 1, got[i]!);
      });
      process.stdout.write(`  ${name}: ${s.sides.map((g, i) => `${g} gateways ${got[i]!.result.okPerSecond}/s`).join(', ')}\n`);
    }
  }
  const points = brokers.flatMap((b) => gateways.map((g) => ({ b, g, s: summarisePoint(runs.get(key(b, g))!.map(asRun), EXPECTED.POST), cores: meanCores(runs.get(key(b, g))!) })));
  const check = errorsBelowPeak(
    points.map((p) => ({ label: `${p.b} brokers × ${p.g} gateways`, median: p.s.throughput.median, errorCount: p.s.errorCount, errors: p.s.errors })),
    false,
  );
  return {
    title: `POST through the chain against brokers and gateways (${c.BENCH_CURVES_SCALE_CONNECTIONS} connections in all, split evenly over the gateways)`,
    columns: ['brokers', 'gateways', 'req/s (201s)', 'p99 ms per round (pooled)', 'errors', 'mean cores: gateways, brokers, core'],
    rows: points.map((p) => [String(p.b), String(p.g), spreadOf(p.s.throughput), p99Text(p.s), errorsText(p.s.errors), p.cores]),
    notes: [
      `Brokers are taken away by stopping them (every broker serves both gateways; a stopped one's lanes are gone before the next point is measured); with one gateway, gateway2 still runs, idle. ` +
        `The brokers' count is measured 3, 2, 1 in that order (a broker is only ever stopped); within it the gateway counts take turns.`,
      `Errors: ${check.text}.`,
    ],
  };
}

function meanCores(runs: Measured[]): string {
  const sum = (names: string[]): number => runs.reduce((s, m) => s + names.reduce((t, n) => t + (m.host.ours[n] ?? 0), 0), 0) / runs.length;
  return `${round(sum(['gateway', 'gateway2']))}, ${round(sum([...BROKERS]))}, ${round(sum(['core']))}`;
}

/** Throughput and p99 against the POST body's size, through the chain. */
async function bodyCurve(ctx: Ctx): Promise<CurveTable> {
  const { c } = ctx;
  const sizes = curvePoints(c.BENCH_CURVES_BODY_BYTES);
  const runs = new Map<number, Measured[]>();
  for (const s of planCurve(sizes, ['chain'], c.BENCH_CURVES_ROUNDS)) {
    const name = `body ${s.point} B, round ${s.round + 1}`;
    const [m] = await step(ctx, name, async () => [await measuredRun(ctx.stack, ctx.blobs, { ...loadOpts(ctx, 'POST', c.BENCH_CURVES_BODY_CONNECTIONS, s.point), warmupSeconds: c.BENCH_WARMUP_SECONDS }, ctx.meter)]);
    runs.set(s.point, [...(runs.get(s.point) ?? []), m!]);
    record(ctx, `body ${s.point} B`, 'chain', s.round + 1, 1, m!);
    process.stdout.write(`  ${name}: ${m!.result.okPerSecond}/s\n`);
  }
  const points = sizes.map((size) => ({ size, s: summarisePoint(runs.get(size)!.map(asRun), EXPECTED.POST), mbps: runs.get(size)!.map((m) => (m.result.okPerSecond * size) / 2 ** 20) }));
  const check = errorsBelowPeak(points.map((p) => ({ label: bytesText(p.size), median: p.s.throughput.median, errorCount: p.s.errorCount, errors: p.s.errors })), false);
  return {
    title: `POST through the chain against body size (${c.BENCH_CURVES_BODY_CONNECTIONS} connections)`,
    columns: ['body', 'req/s (201s)', 'MiB/s of bodies stored', 'p99 ms per round (pooled)', 'errors'],
    rows: points.map((p) => [bytesText(p.size), spreadOf(p.s.throughput), spreadText(p.mbps, 2), p99Text(p.s), errorsText(p.s.errors)]),
    notes: [
      `Bodies are {"title": …, "pad": ["xx…", …]}, padded to the exact size with strings of at most 60,000 characters (under every tier's 64 Ki string limit); one unique record per request. ` +
        `They go to a bench-only collection, \`${BLOBS_COLLECTION}\` (a title and up to 64 such strings), added to the brokers' schema directory for this section: compose's \`notes\` takes a body of 20,000 characters at most.`,
      `Errors: ${check.text}.`,
    ],
  };
}

const bytesText = (n: number): string => (n >= 2 ** 20 && n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);

/** Throughput and p99 against connections, the chain and straight to core side by side. */
async function connectionsCurve(ctx: Ctx, method: Method): Promise<CurveTable> {
  const { c } = ctx;
  const conns = curvePoints(c.BENCH_CURVES_CONNECTIONS);
  type Side = 'chain' | 'direct';
  const runs = new Map<string, Measured[]>();
  const key = (n: number, side: Side): string => `${n}:${side}`;
  for (const s of planCurve(conns, ['chain', 'direct'] as Side[], c.BENCH_CURVES_ROUNDS)) {
    const name = `${method} ${s.point} connections, round ${s.round + 1}`;
    const got = await step(ctx, name, async () => {
      const out: Measured[] = [];
      for (const side of s.sides) out.push(await measuredRun(ctx.stack, ctx.targets[side], { ...loadOpts(ctx, method, s.point), warmupSeconds: c.BENCH_WARMUP_SECONDS }, ctx.meter));
      return out;
    });
    s.sides.forEach((side, i) => {
      runs.set(key(s.point, side), [...(runs.get(key(s.point, side)) ?? []), got[i]!]);
      record(ctx, `${method} ${s.point} connections`, side, s.round + 1, i + 1, got[i]!);
    });
    process.stdout.write(`  ${name}: ${s.sides.map((side, i) => `${side} ${got[i]!.result.okPerSecond}/s`).join(', ')}\n`);
  }
  const points = conns.map((n) => {
    const chain = runs.get(key(n, 'chain'))!;
    const direct = runs.get(key(n, 'direct'))!;
    return { n, chain: summarisePoint(chain.map(asRun), EXPECTED[method]), direct: summarisePoint(direct.map(asRun), EXPECTED[method]), ratio: chain.map((m, r) => m.result.okPerSecond / direct[r]!.result.okPerSecond) };
  });
  const check = errorsBelowPeak(points.map((p) => ({ label: `${p.n} connections`, median: p.chain.throughput.median, errorCount: p.chain.errorCount, errors: p.chain.errors })), true);
  const directCheck = errorsBelowPeak(points.map((p) => ({ label: `${p.n} connections`, median: p.direct.throughput.median, errorCount: p.direct.errorCount, errors: p.direct.errors })), true, 'its own');
  return {
    title: `${method} against connections: the chain and straight to core side by side`,
    columns: ['connections', 'chain req/s', 'straight to core req/s', 'chain ÷ straight (per round)', 'chain p99 ms per round (pooled)', 'straight p99 ms per round (pooled)', 'errors: chain; straight'],
    rows: points.map((p) => [String(p.n), spreadOf(p.chain.throughput), spreadOf(p.direct.throughput), `${spreadText(p.ratio, 2)}×`, p99Text(p.chain), p99Text(p.direct), `${errorsText(p.chain.errors)}; ${errorsText(p.direct.errors)}`]),
    notes: [
      `Straight to core: a client on the private network with the broker's client certificate, mutual TLS to core:8443 (the chain section's (a)). The pairs of a point run back to back; the ratio is taken per round.`,
      `Errors, chain: ${check.text}. Straight to core: ${directCheck.text}.`,
    ],
  };
}

interface KnockRound {
  /** Per source step: what was sent, the tracker's figures after it, CPU during and after. */
  steps: { target: number; sent: number; pps: number; tracked: number; floodCores: number; holdCores: number; usPerSyn: number; rssMiB: number; tcpdumpMiB: number; containerMiB: number }[];
  idle: { cores: number; rssMiB: number; containerMiB: number };
}

/** The sniffer's CPU and memory against tracked sources (gateway2) and against SYN rate (gateway). */
async function knockCurves(ctx: Ctx): Promise<CurveTable[]> {
  const { c, stack } = ctx;
  const gw2 = stack.container('gateway2');
  const gw2Ip = await stack.ip('gateway2', 'edge');
  const gwIp = await stack.ip('gateway', 'edge');
  const sourceRounds: KnockRound[] = [];
  const skippedAll = new Map<number, string>();
  let sentBefore = 0;
  type RatePoint = { rate: number; pps: number; sniffer: number; usPerSyn: number; container: number; rssMiB: number; captured: number; sent: number; outcomes: Record<string, number> };
  const ratePoints = new Map<number, RatePoint[]>();
  const rates = curvePoints(c.BENCH_CURVES_SYN_RATES);
  const health: string[] = [];

  for (let r = 0; r < c.BENCH_CURVES_ROUNDS; r++) {
    const ct = conntrack();
    const plan = planSources(c.BENCH_CURVES_KNOCK_SOURCES, {
      rate: c.BENCH_CURVES_KNOCK_SOURCE_RATE,
      holdSeconds: KNOCK_STEP_TIMEOUT_MS / 1000 - 5,
      pauseSeconds: KNOCK_PAUSE_SECONDS + 2,
      conntrackRoom: ct ? ct.max * CONNTRACK_SHARE - ct.count : Infinity,
      sentBefore,
    });
    for (const s of plan.skipped) if (!skippedAll.has(s.target)) skippedAll.set(s.target, s.why);
    let latest: KnockRound | undefined;
    await step(ctx, `knock sources, round ${r + 1}`, async () => {
      // A fresh tracker for each round (and for a round run again).
      await gw2.restart({ t: 25 });
      await stack.waitHealthy('gateway2');
      ctx.meter = await meterFor(stack, ctx.targets, ctx.flooder);
      const pids = await snifferPids(gw2);
      const windows: { host: HostWindow; edgeSkewMs: number }[] = [];
      const a0 = ctx.meter.snapshot();
      const p0 = sampleSniffer(pids);
      await sleep(KNOCK_PAUSE_SECONDS * 1000);
      const p1 = sampleSniffer(pids);
      windows.push({ host: hostWindow(a0, ctx.meter.snapshot()), edgeSkewMs: 0 });
      const idleCores = snifferCores(p0, p1);
      const out: KnockRound = { steps: [], idle: { cores: idleCores.node + idleCores.tcpdump, rssMiB: p1.rssMiB.node, containerMiB: await containerMemoryMiB(gw2) } };
      let sent = 0;
      for (const st of plan.steps) {
        const a = ctx.meter.snapshot();
        const q0 = sampleSniffer(pids);
        const f = await flood(stack, ctx.flooder, { target: gw2Ip, ports: KNOCK_PORTS, rate: c.BENCH_CURVES_KNOCK_SOURCE_RATE, seconds: st.add / c.BENCH_CURVES_KNOCK_SOURCE_RATE + 30, cidr: SOURCES_CIDR, count: st.add, offset: st.offset, cycle: false });
        const q1 = sampleSniffer(pids);
        const b = ctx.meter.snapshot();
        await sleep(KNOCK_PAUSE_SECONDS * 1000);
        const q2 = sampleSniffer(pids);
        windows.push({ host: hostWindow(a, b), edgeSkewMs: 0 }, { host: hostWindow(b, ctx.meter.snapshot()), edgeSkewMs: 0 });
        const after = await knockFigures(stack, 'gateway2');
        sent += f.sent;
        const during = snifferCores(q0, q1);
        const hold = snifferCores(q1, q2);
        const cpuSeconds = q1.cpu.node - q0.cpu.node + (q1.cpu.tcpdump - q0.cpu.tcpdump);
        out.steps.push({
          target: st.target,
          sent,
          pps: f.pps,
          tracked: after.tracked,
          floodCores: during.node + during.tcpdump,
          holdCores: hold.node + hold.tcpdump,
          usPerSyn: (cpuSeconds * 1e6) / Math.max(1, f.sent),
          rssMiB: q2.rssMiB.node,
          tcpdumpMiB: q2.rssMiB.tcpdump,
          containerMiB: await containerMemoryMiB(gw2),
        });
      }
      latest = out;
      return windows;
    });
    sourceRounds.push(latest!);
    sentBefore = Math.max(sentBefore, plan.steps.at(-1)?.target ?? 0);
    const info = await gw2.inspect();
    if (info.State.OOMKilled || info.RestartCount > 0) health.push(`gateway2 round ${r + 1}: OOM-killed ${info.State.OOMKilled}, restarts ${info.RestartCount}`);
    process.stdout.write(`  knock sources, round ${r + 1}: ${sourceRounds.at(-1)!.steps.map((s) => `${s.target} → tracked ${s.tracked}, node ${round(s.rssMiB)} MiB`).join('; ')}\n`);

    // The SYN rate curve, on the first gateway with compose.yaml's knock settings.
    const pids = await snifferPids(stack.container('gateway'));
    const order = r % 2 === 0 ? rates : [...rates].reverse();
    const roundPoints: RatePoint[] = [];
    await step(ctx, `SYN rates, round ${r + 1}`, async () => {
      roundPoints.length = 0;
      const windows: { host: HostWindow; edgeSkewMs: number }[] = [];
      for (const rate of order) {
        // The gateway refreshes its knock gauges each second: read them once the last flood has settled.
        await sleep(SETTLE_MS);
        const f0 = await knockFigures(stack, 'gateway');
        const a = ctx.meter.snapshot();
        const q0: ProcSample = sampleSniffer(pids);
        const f = await flood(stack, ctx.flooder, { target: gwIp, ports: KNOCK_PORTS, rate, seconds: c.BENCH_CURVES_SYN_SECONDS, cidr: RATE_CIDR, count: RATE_POOL, offset: 0, cycle: true });
        const w = hostWindow(a, ctx.meter.snapshot());
        // CPU until the sniffer has worked through what the capture still held, over the flood's length.
        await sleep(SETTLE_MS);
        const q1 = sampleSniffer(pids);
        windows.push({ host: w, edgeSkewMs: 0 });
        const f1 = await knockFigures(stack, 'gateway');
        const used = snifferCores(q0, q1);
        const stretch = (q1.at - q0.at) / 1000 / f.seconds;
        const cores = { node: used.node * stretch, tcpdump: used.tcpdump * stretch };
        const outcomes: Record<string, number> = {};
        for (const [k, v] of Object.entries(f1.outcomes)) if (v - (f0.outcomes[k] ?? 0) > 0) outcomes[k] = v - (f0.outcomes[k] ?? 0);
        const point: RatePoint = {
          rate,
          pps: f.pps,
          sniffer: cores.node + cores.tcpdump,
          usPerSyn: ((q1.cpu.node - q0.cpu.node + q1.cpu.tcpdump - q0.cpu.tcpdump) * 1e6) / Math.max(1, f.sent),
          container: w.ours.gateway ?? NaN,
          rssMiB: q1.rssMiB.node,
          captured: f1.captured - f0.captured,
          sent: f.sent,
          outcomes,
        };
        roundPoints.push(point);
      }
      return windows;
    });
    for (const p of roundPoints) ratePoints.set(p.rate, [...(ratePoints.get(p.rate) ?? []), p]);
    process.stdout.write(`  SYN rates, round ${r + 1}: ${rates.map((rate) => `${rate}/s → sniffer ${round(ratePoints.get(rate)!.at(-1)!.sniffer)} cores`).join('; ')}\n`);
  }
  const gwInfo = await stack.inspect('gateway');
  if (gwInfo.State.OOMKilled || gwInfo.RestartCount > 0) health.push(`gateway: OOM-killed ${gwInfo.State.OOMKilled}, restarts ${gwInfo.RestartCount}`);

  const targets = curvePoints(sourceRounds.flatMap((r) => r.steps.map((s) => s.target)));
  const at = (t: number): KnockRound['steps'] => sourceRounds.flatMap((r) => r.steps.filter((s) => s.target === t));
  const lossy = targets.filter((t) => at(t).some((s) => s.tracked < s.sent * 0.99));
  const sourceTable: CurveTable = {
    title: `The knock sniffer against tracked sources (gateway2: distinct spoofed sources, one first-knock SYN each, ${c.BENCH_CURVES_KNOCK_SOURCE_RATE} SYN/s asked, ${spreadText(sourceRounds.flatMap((r) => r.steps.filter((s) => s.target === targets.at(-1)).map((s) => s.pps)), 0)} sent at the largest point)`,
    columns: ['sources sent', 'tracked after', 'sniffer cores while sending', 'sniffer µs per SYN', 'sniffer cores holding them', 'gateway process RSS MiB', 'tcpdump RSS MiB', 'container memory MiB'],
    rows: [
      ['0 (idle)', '—', '—', '—', spreadText(sourceRounds.map((r) => r.idle.cores), 3), spreadText(sourceRounds.map((r) => r.idle.rssMiB)), '—', spreadText(sourceRounds.map((r) => r.idle.containerMiB))],
      ...targets.map((t) => [
        String(t),
        spreadText(at(t).map((s) => s.tracked), 0),
        spreadText(at(t).map((s) => s.floodCores), 3),
        spreadText(at(t).map((s) => s.usPerSyn), 2),
        spreadText(at(t).map((s) => s.holdCores), 3),
        spreadText(at(t).map((s) => s.rssMiB)),
        spreadText(at(t).map((s) => s.tcpdumpMiB)),
        spreadText(at(t).map((s) => s.containerMiB)),
      ]),
      ...[...skippedAll].map(([t, why]) => [String(t), `not measured: ${why}`, '', '', '', '', '', '']),
    ],
    notes: [
      `The sniffer is the gateway's main Node process (the tracker, fed by the pcap stream) and its tcpdump (the kernel capture); their CPU and resident memory are read from /proc on this host at the window edges, the container's memory from its cgroup (without page cache). ` +
        `Each round restarts gateway2 (a fresh tracker), measures it idle for ${KNOCK_PAUSE_SECONDS} s, then adds sources step by step (each step new addresses from ${SOURCES_CIDR}, one SYN each to a port of the knock range ${KNOCK_PORTS}, which is a first knock in time mode): CPU while a step is sent, then ${KNOCK_PAUSE_SECONDS} s holding them (the tracker's sweep goes over every source each second), then the tracker's own count (nonstop_knock_sources_tracked). ` +
        `gateway2 runs with a source cap and step timeout raised (settings below) so that the sources stay tracked while the next are sent at this machine's rate; at compose.yaml's 5 s step timeout a source is dropped 5 s after its SYN, so holding N sources takes N/5 SYN/s, and the 50,000 cap evicts the oldest beyond that. gateway2's memory limit is raised to ${KNOCK_MEMORY_BYTES / 2 ** 20} MiB (compose.yaml: 256 MiB) so that the memory a count needs is measured rather than cut off.`,
      `Errors: ${health.length === 0 ? 'the sniffer kept capturing and no gateway was restarted or OOM-killed' : health.join('; ')}; ` +
        `${lossy.length === 0 ? 'every source sent was tracked (at least 99 %)' : `fewer than 99 % of the sources sent were tracked at ${lossy.join(', ')} (the capture dropped SYNs, or the tracker evicted)`}.`,
    ],
  };
  const rateRows = rates.map((rate) => {
    const ps = ratePoints.get(rate) ?? [];
    const outcomes: Record<string, number> = {};
    for (const p of ps) for (const [k, v] of Object.entries(p.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
    const total = Object.values(outcomes).reduce((s, v) => s + v, 0);
    return [
      String(rate),
      spreadText(ps.map((p) => p.pps), 0),
      spreadText(ps.map((p) => p.sniffer), 3),
      spreadText(ps.map((p) => p.usPerSyn), 2),
      spreadText(ps.map((p) => p.container), 3),
      spreadText(ps.map((p) => p.rssMiB)),
      `${round((100 * ps.reduce((s, p) => s + p.captured, 0)) / Math.max(1, ps.reduce((s, p) => s + p.sent, 0)), 1)} %`,
      total === 0 ? '—' : Object.entries(outcomes).map(([k, v]) => `${k} ${round((100 * v) / total)} %`).join(', '),
    ];
  });
  const rateLoss = rates.filter((rate) => (ratePoints.get(rate) ?? []).some((p) => p.captured < p.sent * 0.99));
  const rateTable: CurveTable = {
    title: `The knock sniffer against SYN rate (the first gateway, compose.yaml's knock settings; ${RATE_POOL} spoofed sources sent round and round for ${c.BENCH_CURVES_SYN_SECONDS} s)`,
    columns: ['SYN/s asked', 'SYN/s sent', 'sniffer cores', 'sniffer µs per SYN', 'gateway container cores', 'gateway process RSS MiB', 'SYNs captured', 'what the tracker made of them'],
    rows: rateRows,
    notes: [
      `A fixed set of ${RATE_POOL} sources from ${RATE_CIDR}, each with its own source and knock port and a new sequence number each time (so each SYN is a new attempt, not a retransmission): the flows stay the same ones to the host's connection tracking. ` +
        `Once a source has spent its knock budget (10 attempts, then one per 6 s) its SYNs are "throttled", so at these rates the tracker's cheap path dominates; the outcome mix says which paths were taken. ` +
        `Sniffer CPU is counted from the flood's start until ${SETTLE_MS / 1000} s after its end (the capture's backlog included) and given as cores over the flood's length; the container's CPU (nginx and the app included, idle here) is over the flood alone.`,
      `Errors: ${rateLoss.length === 0 ? 'the sniffer captured at least 99 % of the SYNs sent at every rate' : `the sniffer captured fewer than 99 % of the SYNs sent at ${rateLoss.join(', ')} SYN/s`}.`,
    ],
  };
  return [sourceTable, rateTable];
}
