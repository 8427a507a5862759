import type Docker from 'dockerode';
import type { Stack } from '../test/support/stack/stack';
import { startBaselines } from './baselines';
import { busyThresholds, MIN_REPORTED_ROUNDS, quietWait, type BenchConfig } from './config';
import { busyReasons, HostBusyError, HostMeter, quietCheck, worstOf, windowText } from './host';
import { closedLoopRows, openLoopRows, PATH_KEYS, PATHS, type HealthCheckRun, type PathKey, type Run, type Runs, type Side as PathSide } from './chain-rows';
import { benchSession, chainTarget, directTarget, measuredRun, runSummary, type Measured, type Target } from './load';
import type { Comparison, ComparisonRow, RunSummary, SectionResult } from './report';
import { round, roundOrder, spread } from './stats';

/**
 * The whole chain against what a user would set up instead, side by side in one run:
 *
 *   chain   client → nginx (TLS) → gateway app → SSH tunnel opened by the broker → Redis
 *           queue → broker → core (mutual TLS) → FerretDB
 *   (a)     straight to core over mutual TLS, from the private network
 *   (b)     a TLS edge: client → nginx → core
 *   (c)     the do-it-yourself origin-hiding setup: client → nginx → `ssh -R` reverse tunnel
 *           opened by the hidden host (autossh) → core
 *
 * Every side takes its turn in every round, in a rotating order (stats.roundOrder); each run
 * is warm-up then a measured window at whose edges every container's cgroup CPU counter and
 * the machine's are read (load.measuredRun). A round during which other work on the machine
 * passed the threshold is discarded and run again, a few times at most; then the section
 * refuses (HostBusyError) rather than publish it.
 */

/** How late the counters may be read at a window's edge before the run counts as disturbed. */
const MAX_EDGE_SKEW_MS = 25;

/** The health checks Docker ran in any of `containers` that overlap [from, to] (epoch ms). */
async function healthChecksDuring(containers: Record<string, Docker.Container>, from: number, to: number): Promise<HealthCheckRun[]> {
  const out: HealthCheckRun[] = [];
  for (const [name, c] of Object.entries(containers)) {
    const log = (await c.inspect()).State.Health?.Log ?? [];
    for (const h of log) {
      const start = Date.parse(h.Start);
      const end = Date.parse(h.End);
      if (Number.isFinite(start) && Number.isFinite(end) && start <= to && end >= from) out.push({ container: name, start, end });
    }
  }
  return out;
}

interface Side extends PathSide {
  target: Target;
}


export async function chainBench(stack: Stack, c: BenchConfig): Promise<SectionResult> {
  const { token, recordId } = await benchSession(stack);
  const chain = await chainTarget(stack, token);
  const direct = await directTarget(stack, token);
  const baselines = await startBaselines(stack, chain.client, token, recordId);
  const sides: Side[] = [
    { key: 'chain', target: chain, tiers: ['gateway', 'broker', 'core'], client: 'edge client' },
    { key: 'direct', target: direct, tiers: ['core'], client: 'private client' },
    { key: 'edge', target: baselines.edge, tiers: baselines.paths.edge, client: 'edge client' },
    { key: 'tunnel', target: baselines.tunnel, tiers: baselines.paths.tunnel, client: 'edge client' },
  ];
  const watch: Record<string, Docker.Container> = {
    gateway: stack.container('gateway'),
    broker: stack.container('broker'),
    core: stack.container('core'),
    ...baselines.containers,
    'edge client': chain.client,
    'private client': direct.client,
  };
  const meter = await HostMeter.create(stack.docker, watch);
  const thresholds = busyThresholds(c);
  const unreported: string[] = [];
  if (c.BENCH_CHAIN_ROUNDS < MIN_REPORTED_ROUNDS) unreported.push(`${c.BENCH_CHAIN_ROUNDS} rounds per side (at least ${MIN_REPORTED_ROUNDS} are published)`);

  // The stack and the baselines are up and idle: the machine must be quiet before the first round.
  const before = await quietCheck(meter, thresholds, c.BENCH_QUIET_SECONDS, quietWait(c));
  if (before.reasons.length > 0) {
    if (!c.BENCH_ALLOW_BUSY) throw new HostBusyError('before the chain section (stack idle)', before.reasons);
    unreported.push(`host busy before the rounds: ${before.reasons.join('; ')}`);
  }

  let retriesLeft = c.BENCH_BUSY_RETRIES;
  const discarded: string[] = [];
  /** With BENCH_ALLOW_BUSY: the rounds kept although the host was busy. */
  const keptBusy: string[] = [];
  const all: Measured[] = [];
  const summaries: RunSummary[] = [];
  const expected = { POST: 201, GET: 200 } as const;
  const paths = { POST: '/v1/records/notes', GET: `/v1/records/notes/${recordId}` } as const;

  /** `rounds` rounds of every side in turn; a round that saw a busy host is run again. */
  const runRounds = async (name: string, run: (s: Side) => Promise<Measured>): Promise<Runs> => {
    const out: Runs = { chain: [], direct: [], edge: [], tunnel: [] };
    for (let r = 0; r < c.BENCH_CHAIN_ROUNDS; ) {
      const started = Date.now();
      const order = roundOrder(sides.length, r).map((i) => sides[i]!);
      const got = new Map<PathKey, Measured>();
      for (const s of order) got.set(s.key, await run(s));
      const busy = order.flatMap((s) => {
        const m = got.get(s.key)!;
        // A timer this late means this process waited for a CPU: the machine is oversubscribed.
        const late = m.edgeSkewMs > MAX_EDGE_SKEW_MS ? [`counters read ${round(m.edgeSkewMs)} ms after a window edge (> ${MAX_EDGE_SKEW_MS})`] : [];
        return [...busyReasons(m.host, thresholds), ...late].map((why) => `${s.key}: ${why}`);
      });
      process.stdout.write(
        `  ${name}, round ${r + 1} (${Math.round((Date.now() - started) / 1000)} s): ${order.map((s) => `${s.key} ${got.get(s.key)!.result.okPerSecond}/s`).join(', ')}` +
          `${busy.length > 0 ? ` — host busy: ${busy.join('; ')}` : ''}\n`,
      );
      if (busy.length > 0 && !c.BENCH_ALLOW_BUSY) {
        if (retriesLeft === 0) throw new HostBusyError(`during ${name}, round ${r + 1} (${c.BENCH_BUSY_RETRIES} busy rounds already run again)`, busy);
        retriesLeft--;
        discarded.push(`${name} round ${r + 1} (${busy.join('; ')})`);
        const quiet = await quietCheck(meter, thresholds, c.BENCH_QUIET_SECONDS, quietWait(c));
        if (quiet.reasons.length > 0) throw new HostBusyError(`after a busy round of ${name}`, quiet.reasons);
        continue;
      }
      if (busy.length > 0) keptBusy.push(`${name} round ${r + 1}`);
      order.forEach((s, position) => {
        const m = got.get(s.key)!;
        out[s.key].push(m);
        all.push(m);
        summaries.push(runSummary(name, s.key, r + 1, position + 1, m));
      });
      r++;
    }
    return out;
  };

  const load = async (s: Side, method: 'POST' | 'GET', rate?: number): Promise<Run> => {
    const m = await measuredRun(
      stack,
      s.target,
      {
        method,
        path: paths[method],
        warmupSeconds: c.BENCH_WARMUP_SECONDS,
        timeoutMs: c.BENCH_TIMEOUT_MS,
        ...(rate === undefined ? { seconds: c.BENCH_CHAIN_SECONDS, concurrency: c.BENCH_CONCURRENCY } : { seconds: c.BENCH_LATENCY_SECONDS, concurrency: 2 * c.BENCH_CONCURRENCY, rate, timeline: true }),
      },
      meter,
    );
    // Open loop: the tail's neighbours. Docker keeps a container's last 5 checks, 25 s at a 5 s interval: read at once.
    return rate === undefined ? m : { ...m, healthChecks: await healthChecksDuring(watch, m.result.windowStart, m.result.windowEnd) };
  };

  const rows: ComparisonRow[] = [];
  /** What holds back each target missed, from the runs that missed it. */
  const shortfalls: string[] = [];
  const rates: Record<string, number> = {};
  for (const method of ['POST', 'GET'] as const) {
    const runs = await runRounds(`${method} closed loop`, (s) => load(s, method));
    rates[method] = Math.max(1, Math.floor(spread(runs.chain.map((m) => m.result.okPerSecond)).median / 2));
    const closed = closedLoopRows(method, expected[method], runs, sides, c);
    rows.push(...closed.rows);
    if (closed.shortfall) shortfalls.push(closed.shortfall);
  }
  for (const method of ['POST', 'GET'] as const) {
    const runs = await runRounds(`${method} open loop`, (s) => load(s, method, rates[method]));
    const open = openLoopRows(method, expected[method], rates[method]!, runs, sides, c);
    rows.push(...open.rows);
    if (open.shortfall) shortfalls.push(open.shortfall);
  }

  const worst = worstOf(all.map((m) => m.host));
  if (keptBusy.length > 0) {
    unreported.push(`host busy in ${keptBusy.length} of ${all.length / sides.length} rounds (worst window: other work ${round(worst.other)} cores, steal ${round(worst.stealFraction * 100, 1)} %)`);
  }
  const comparison: Comparison = { columns: PATH_KEYS.map((k) => PATHS[k].column), rows };
  const notes = [
    `What each path does: ${PATH_KEYS.map((k) => `**${PATHS[k].column}**: ${PATHS[k].does}`).join(' ')}`,
    `Method: ${c.BENCH_CHAIN_ROUNDS} rounds per path and scenario; within a round the four paths run one after another in a rotating order (a Williams square: each path runs in each position, and after each other path, equally often). ` +
      `Each run is ${c.BENCH_WARMUP_SECONDS} s of warm-up and then a measured window (closed loop ${c.BENCH_CHAIN_SECONDS} s with ${c.BENCH_CONCURRENCY} connections; open loop ${c.BENCH_LATENCY_SECONDS} s at a fixed rate, latency from each request's scheduled start). ` +
      `All four paths use the same load client (bench/tools/load.js in a probe container), keep-alive HTTPS with TLS to the client, a unique record per POST. ` +
      `A failed request (any other status, a reset, no answer within ${c.BENCH_TIMEOUT_MS / 1000} s) counts as a latency sample of ${c.BENCH_TIMEOUT_MS / 1000} s. ` +
      `Latency quantiles pool every request of a path's rounds; a quantile is shown only when at least 10 samples lie beyond it, else "—". Throughput and CPU per request are median [min–max] over rounds; the ratios are taken round by round (a round's runs follow one another), median [min–max].`,
    `CPU: each container's cgroup counter (cgroup v${meter.cgroupVersion} ${meter.cgroupVersion === 1 ? 'cpuacct.usage' : 'cpu.stat usage_usec'}) and /proc/stat, read by this process at the two edges of every measured window (the window is planned here and the load client starts measuring at its start; the reads landed at most ${round(Math.max(...all.map((m) => m.edgeSkewMs)), 1)} ms from the edges, and a run whose reads are more than ${MAX_EDGE_SKEW_MS} ms late counts as disturbed, like a busy host). ` +
      `All tiers, both databases, the baselines and the load clients share this machine's ${all[0]?.host.cores ?? '?'} cores; on separate hosts each tier would have its own.`,
    `Busy host: a run counts only when, over its window, other work (containers not in this benchmark, and host processes other than the Docker engine, kernel threads and this benchmark) used at most ${thresholds.maxOtherCores} cores and steal stayed at or below ${thresholds.maxStealFraction * 100} %; ` +
      `the machine was also measured idle for ${c.BENCH_QUIET_SECONDS} s before the first round (${windowText(before.window)}${before.waitedSeconds >= 1 ? `, after waiting ${before.waitedSeconds} s for quiet` : ''}). ` +
      `Worst window of this run: other work ${round(worst.other)} cores (other containers ${round(worst.otherContainers)}, other host processes ${round(worst.otherHost)}), steal ${round(worst.stealFraction * 100, 1)} %; ` +
      `reported apart, not counted as other work: the Docker engine (logs, execs and health checks of every container, ours included) up to ${round(worst.engine)} cores, kernel threads (I/O and packets, mostly ours) up to ${round(worst.kernel)}, interrupts up to ${round(worst.interrupts)}. ` +
      `Load average is shown but not a criterion: it counts our own runnable threads and lags a minute. ` +
      `Rounds discarded as busy and run again (at most ${c.BENCH_BUSY_RETRIES}): ${discarded.length === 0 ? 'none' : discarded.join('; ')}.`,
    `Profile by process: the CPU of each process inside the path's containers (nginx, node, redis-server, ferretdb, sshd…; all processes of one name together, threads included), read from /proc/<pid>/stat at the same window edges, in ms per answered request; a process that started or ended within a window is left out of that window.`,
    ...shortfalls,
  ];
  return { comparison, notes, unreported, runs: summaries };
}
