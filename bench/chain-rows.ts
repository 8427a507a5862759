import type { BenchConfig } from './config';
import { errorsText, type Measured } from './load';
import type { ComparisonRow } from './report';
import { fig, percentiles, pooled, quantileInterval, round, spread, spreadText, type Percentiles } from './stats';

/**
 * The chain section's table from its runs (pure): each path's figures side by side, the
 * chain against each baseline round by round, the targets, and for a target missed the
 * figures that show what holds it back (the CPU profile by process).
 */

/**
 * Issue 13's targets on this shared 2-core machine: closed-loop throughput at least these
 * multiples of (a) straight to core and of (c) the ssh -R tunnel, and at most this much p99
 * added to (a)'s at half the chain's peak.
 */
export const TARGETS = {
  throughput: { POST: { direct: 1.0, tunnel: 1.0 }, GET: { direct: 0.75, tunnel: 1.0 } },
  addedP99Ms: 10,
} as const;

export type PathKey = 'chain' | 'direct' | 'edge' | 'tunnel';
export const PATH_KEYS: readonly PathKey[] = ['chain', 'direct', 'edge', 'tunnel'];

/** Column headers and what each path does (printed under the table). */
export const PATHS: Record<PathKey, { column: string; does: string }> = {
  chain: {
    column: 'nonstop chain',
    does: 'client → nginx (TLS) in the gateway → gateway app → SSH tunnel opened from the hidden side by the broker → Redis queue → broker → core (mutual TLS) → FerretDB. The gateway never has a route to core. POSTs that reach the broker while its previous batch is with core go to core together (group commit, one insert per batch); the baselines send each POST on its own.',
  },
  direct: {
    column: '(a) straight to core',
    does: "a client on the private network → core over mutual TLS with the broker's client certificate: what a client gets with no edge at all, and nothing hidden.",
  },
  edge: {
    column: '(b) nginx TLS edge',
    does: "client → nginx (TLS) → core (mutual TLS). nginx is the gateway image's own binary with a minimal proxy configuration: one worker and the gateway's TLS settings, keep-alive connections to core, an access line per request. The edge sits on the private network, so core's address is one hop from the internet.",
  },
  tunnel: {
    column: '(c) nginx + ssh -R',
    does: "client → nginx (TLS, same configuration as (b)) on a public host with no route to the private network → 127.0.0.1:9443, an OpenSSH reverse forward (`ssh -R`) whose SSH connection the hidden host opens to the public host's sshd and keeps up with autossh → core (mutual TLS). The do-it-yourself origin-hiding setup, from Debian's OpenSSH and autossh.",
  },
};

/** A path as the rows see it; the chain is first. */
export interface Side {
  key: PathKey;
  /** The containers this path's requests pass through (client excluded). */
  tiers: string[];
  client: string;
}

/** Each path's runs of one scenario, round by round (index r of each is round r). */
export type Runs = Record<PathKey, Run[]>;

/** A Docker health check's run in one of the benchmark's containers, epoch ms (from its State.Health.Log). */
export interface HealthCheckRun {
  container: string;
  start: number;
  end: number;
}

/** A run; open-loop runs also carry the health checks that ran during their window (with load.js's timeline). */
export type Run = Measured & { healthChecks?: HealthCheckRun[] };

/**
 * How the slowest `fraction` of a path's requests (all rounds pooled, by latency) line up
 * with the health checks that ran meanwhile: how many of them overlapped one, against how
 * many of all requests did. Undefined without timelines.
 */
export function healthCheckOverlap(runs: Run[], fraction = 0.01): { slow: number; slowDuring: number; all: number; allDuring: number; checkMs: number[] } | undefined {
  const requests = runs.flatMap((m) => (m.result.timeline ?? []).map(([start, end]) => ({ start, end, checks: m.healthChecks ?? [] })));
  if (requests.length === 0 || runs.some((m) => m.healthChecks === undefined)) return undefined;
  const during = (r: { start: number; end: number; checks: HealthCheckRun[] }): boolean => r.checks.some((h) => r.start <= h.end && r.end >= h.start);
  const byLatency = [...requests].sort((a, b) => b.end - b.start - (a.end - a.start));
  const slow = byLatency.slice(0, Math.max(1, Math.ceil(requests.length * fraction)));
  const checkMs = runs.flatMap((m) => (m.healthChecks ?? []).map((h) => h.end - h.start));
  return { slow: slow.length, slowDuring: slow.filter(during).length, all: requests.length, allDuring: requests.filter(during).length, checkMs };
}

/** "61 of 73 (84 %) overlapped a health check, against 11 % of all 7200 requests", or "—". */
function overlapText(o: ReturnType<typeof healthCheckOverlap>): string {
  if (!o) return '—';
  return `${o.slowDuring} of its slowest ${o.slow} (${Math.round((100 * o.slowDuring) / o.slow)} %) overlapped a health check, against ${Math.round((100 * o.allDuring) / o.all)} % of all ${o.all} requests`;
}

/** The settings the rows describe. */
export type RowsConfig = Pick<BenchConfig, 'BENCH_CONCURRENCY' | 'BENCH_CHAIN_ROUNDS' | 'BENCH_CHAIN_SECONDS' | 'BENCH_LATENCY_SECONDS'>;

/** One cell per baseline: `f` over the chain's rounds and that baseline's, round by round. */
function against(sides: Side[], runs: Runs, f: (chain: Measured, other: Measured, side: Side) => number, text: (perRound: number[]) => string): string[] {
  return sides.filter((s) => s.key !== 'chain').map((s) => text(runs.chain.map((m, r) => f(m, runs[s.key][r]!, s))));
}

/** CPU ms per expected answer on a path's tiers over a run's window. */
function cpuPerRequest(m: Measured, tiers: string[]): number {
  const cores = tiers.reduce((s, t) => s + (m.host.ours[t] ?? 0), 0);
  return (cores * 1000) / m.result.okPerSecond;
}

/** ms of CPU per answered request by container and process name over one run, e.g. { 'broker/node': 0.41 }. */
function profileOf(m: Measured, tiers: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of tiers) for (const [comm, cores] of Object.entries(m.host.oursByProcess[t] ?? {})) out[`${t}/${comm}`] = (cores * 1000) / m.result.okPerSecond;
  return out;
}

/** The median over runs of each process's ms per request (a process missing from a run counts 0 there). */
function medianProfile(runs: Measured[], tiers: string[]): Record<string, number> {
  const each = runs.map((m) => profileOf(m, tiers));
  const names = [...new Set(each.flatMap((p) => Object.keys(p)))];
  return Object.fromEntries(names.map((n) => [n, spread(each.map((p) => p[n] ?? 0)).median]));
}

/** Largest first (by name among equals), for text that reads the same from the same figures. */
const largestFirst = (x: [string, number], y: [string, number]): number => y[1] - x[1] || x[0].localeCompare(y[0]);

/** "broker/node 0.52, gateway/nginx 0.31, …", processes under 0.01 ms left out. */
function profileText(p: Record<string, number>): string {
  const shown = Object.entries(p)
    .filter(([, ms]) => ms >= 0.01)
    .sort(largestFirst);
  return shown.length === 0 ? '—' : shown.map(([n, ms]) => `${n} ${round(ms, 2)}`).join(', ');
}

function errorsOver(runs: Measured[], expected: number): string {
  const statuses: Record<string, number> = {};
  for (const m of runs) for (const [k, v] of Object.entries(m.result.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return errorsText({ statuses }, expected);
}

function latencyText(p: Percentiles): string {
  return `${fig(p.p50)} / ${fig(p.p99)} / ${fig(p.p999)}`;
}

/** Mean cores the named containers used together over a path's runs. */
function meanCoresOf(runs: Measured[], names: string[]): number {
  return runs.reduce((sum, m) => sum + names.reduce((t, n) => t + (m.host.ours[n] ?? 0), 0), 0) / runs.length;
}

/** Mean cores of each container over a path's runs, e.g. "gateway 0.31, broker 0.4". */
function meanCores(runs: Measured[], names: string[]): string {
  return names.map((n) => `${n} ${round(meanCoresOf(runs, [n]))}`).join(', ');
}

/** The side of a path (each path has one). */
const sideOf = (sides: Side[], k: PathKey): Side => sides.find((s) => s.key === k)!;

/** "+3.2", "-1.5" or "—". */
const signed = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${fig(x)}` : '—');
/** The same to two decimals: CPU ms per request, where fig's two significant digits hide the differences. */
const signed2 = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${round(x, 2)}` : '—');
const roundP99 = (m: Measured): number => percentiles(m.latency).p99 ?? NaN;
const ratioText = (xs: number[]): string => `${spreadText(xs, 2)}×`;

/**
 * If throughput follows CPU per request, a target of `want` × baseline allows the chain
 * baseline-CPU ÷ want per request: how much of that core's own processes take on the
 * chain's path, and what is left for the parts that protect it.
 */
function budgetText(method: string, k: PathKey, want: number, baselineMs: number, chain: Record<string, number>): string {
  const budgetMs = baselineMs / want;
  const total = Object.values(chain).reduce((sum, ms) => sum + ms, 0);
  const core = Object.entries(chain).reduce((sum, [n, ms]) => sum + (n.startsWith('core/') ? ms : 0), 0);
  return (
    `With throughput following CPU, ${want} × ${PATHS[k].column} allows the chain ${round(budgetMs, 2)} ms per ${method}: core's processes take ${round(core, 2)} ms of it on the chain's path, ` +
    `which leaves ${round(budgetMs - core, 2)} ms for the TLS edge, the gateway, the tunnel, the queue and the broker; they take ${round(total - core, 2)} ms.`
  );
}

export interface Rows {
  rows: ComparisonRow[];
  /** Why the rows' target was missed, with the figures that show it; absent when it was met. */
  shortfall?: string;
}

/** The closed-loop rows of one method: throughput, latency, CPU per request, the profile by process. */
export function closedLoopRows(method: 'POST' | 'GET', expected: number, runs: Runs, sides: Side[], c: RowsConfig): Rows {
  const scenario = `${method} ${method === 'POST' ? '/v1/records/notes' : '/v1/records/notes/{id}'}, closed loop, ${c.BENCH_CONCURRENCY} connections`;
  const ok = (m: Measured): number => m.result.okPerSecond;
  const chainTiers = sides[0]!.tiers;
  const tiersOf = (k: PathKey): string[] => sideOf(sides, k).tiers;
  const vs = (k: PathKey): number => spread(runs.chain.map((m, r) => ok(m) / ok(runs[k][r]!))).median;
  const want = TARGETS.throughput[method];
  const misses = (['direct', 'tunnel'] as const).filter((k) => !(vs(k) >= want[k]));
  const measured = Number.isFinite(vs('direct')) && Number.isFinite(vs('tunnel'));
  const lat = Object.fromEntries(sides.map((s) => [s.key, percentiles(pooled(runs[s.key].map((m) => m.latency)))])) as Record<PathKey, Percentiles>;
  const cpu = (k: PathKey): number => spread(runs[k].map((m) => cpuPerRequest(m, tiersOf(k)))).median;
  const profiles = Object.fromEntries(sides.map((s) => [s.key, medianProfile(runs[s.key], s.tiers)])) as Record<PathKey, Record<string, number>>;
  // Against (a): what the chain spends that straight to core does not (core's processes are in both).
  const extra = Object.fromEntries(Object.keys({ ...profiles.chain, ...profiles.direct }).map((n) => [n, (profiles.chain[n] ?? 0) - (profiles.direct[n] ?? 0)]));
  const extraText = Object.entries(extra)
    .filter(([, ms]) => Math.abs(ms) >= 0.01)
    .sort(largestFirst)
    .map(([n, ms]) => `${n} ${signed2(ms)}`)
    .join(', ');
  const shortfall =
    measured && misses.length > 0
      ? `**What holds ${method} back** (${misses.map((k) => `${want[k]} × ${PATHS[k].column} missed: ${round(vs(k), 2)}×`).join('; ')}): ` +
        `all paths' processes share this machine's ${runs.chain[0]?.host.cores ?? '?'} cores, and in the closed loop they keep them busy, so throughput follows the CPU an answered request costs on them. ` +
        `A ${method} costs the chain ${round(cpu('chain'), 2)} ms of CPU, (a) ${round(cpu('direct'), 2)} ms, (c) ${round(cpu('tunnel'), 2)} ms (medians of rounds). ` +
        `Profile, ms of CPU per ${method} by process: chain: ${profileText(profiles.chain)}; (a): ${profileText(profiles.direct)}; (c): ${profileText(profiles.tunnel)}. ` +
        `The chain against (a), process by process: ${extraText}. ` +
        misses.map((k) => budgetText(method, k, want[k], cpu(k), profiles.chain)).join(' ')
      : undefined;
  const rows: ComparisonRow[] = [
    {
      scenario,
      metric: `throughput, ${expected}s per second, median [min–max] of rounds; against: chain ÷ baseline per round`,
      values: sides.map((s) => spreadText(runs[s.key].map(ok))),
      against: against(sides, runs, (a, b) => ok(a) / ok(b), ratioText),
      target: `≥ ${want.direct} × (a) and ≥ ${want.tunnel} × (c)`,
      ...(measured ? { met: misses.length === 0 } : {}),
      note: `${c.BENCH_CHAIN_ROUNDS} rounds × ${c.BENCH_CHAIN_SECONDS} s per path; errors: ${sides.map((s) => `${s.key} ${errorsOver(runs[s.key], expected)}`).join(', ')}`,
    },
    {
      scenario: `${method}, the same closed-loop runs`,
      metric: 'latency p50 / p99 / p99.9 ms, all rounds pooled (mostly queueing: connections ÷ throughput); against: chain p99 ÷ baseline p99 per round',
      values: sides.map((s) => latencyText(lat[s.key])),
      against: against(sides, runs, (a, b) => roundP99(a) / roundP99(b), ratioText),
      note: `samples: ${sides.map((s) => `${s.key} ${lat[s.key].n}`).join(', ')}; p99 per round: ${sides.map((s) => `${s.key} ${spreadText(runs[s.key].map(roundP99))}`).join(', ')}`,
    },
    {
      scenario: `${method}, the same closed-loop runs`,
      metric: 'CPU ms per answered request in the containers on the path (client excluded), median [min–max]; against: chain ÷ baseline per round',
      values: sides.map((s) => spreadText(runs[s.key].map((m) => cpuPerRequest(m, s.tiers)), 2)),
      against: against(sides, runs, (a, b, side) => cpuPerRequest(a, chainTiers) / cpuPerRequest(b, side.tiers), ratioText),
      note: `mean cores per container: ${sides.map((s) => `${s.key}: ${meanCores(runs[s.key], [...s.tiers, s.client])}`).join('; ')}`,
    },
    {
      scenario: `${method}, the same closed-loop runs`,
      metric: 'profile: CPU ms per answered request by container and process, median of rounds, largest first',
      values: sides.map((s) => profileText(profiles[s.key])),
      against: sides.filter((s) => s.key !== 'chain').map((s) => `${signed2(cpu('chain') - cpu(s.key))} ms`),
      note: 'against: the CPU the chain spends per request beyond the baseline, ms (medians of rounds)',
    },
  ];
  return shortfall === undefined ? { rows } : { rows, shortfall };
}

/** The open-loop row of one method at half the chain's peak: latency and the p99 the chain adds. */
export function openLoopRows(method: 'POST' | 'GET', expected: number, rate: number, runs: Runs, sides: Side[], c: RowsConfig): Rows {
  const lat = Object.fromEntries(sides.map((s) => [s.key, pooled(runs[s.key].map((m) => m.latency))])) as Record<PathKey, number[]>;
  const p = Object.fromEntries(sides.map((s) => [s.key, percentiles(lat[s.key])])) as Record<PathKey, Percentiles>;
  const added = (other: PathKey): number => (p.chain.p99 ?? NaN) - (p[other].p99 ?? NaN);
  const interval = (k: PathKey): string => {
    const ci = quantileInterval(lat[k], 0.99);
    return ci ? `${fig(ci[0])}–${fig(ci[1])}` : '—';
  };
  const addedMs = added('direct');
  const meanOf = (k: PathKey): number => meanCoresOf(runs[k], sideOf(sides, k).tiers);
  const clientCores = (k: PathKey): number => round(meanCoresOf(runs[k], [sideOf(sides, k).client]), 2);
  const chainProfile = medianProfile(runs.chain, sides[0]!.tiers);
  const busyProcesses = Object.entries(chainProfile).filter(([, ms]) => ms >= 0.01);
  const cores = runs.chain[0]?.host.cores ?? '?';
  const overlap = Object.fromEntries(sides.map((s) => [s.key, healthCheckOverlap(runs[s.key])])) as Record<PathKey, ReturnType<typeof healthCheckOverlap>>;
  const chainChecks = overlap.chain?.checkMs ?? [];
  const checksText =
    overlap.chain && chainChecks.length > 0
      ? ` Of the chain's slowest 1 % of requests, ${overlapText(overlap.chain)}: Docker's HEALTHCHECK execs \`nonstop-healthcheck\` in each container every 5 s, ${Math.round(Math.min(...chainChecks))}–${Math.round(Math.max(...chainChecks))} ms each here, and a chain that already keeps ${round(meanOf('chain'), 2)} of ${cores} cores busy has little to spare for that burst; (a): ${overlapText(overlap.direct)}.`
      : '';
  const shortfall =
    Number.isFinite(addedMs) && addedMs > TARGETS.addedP99Ms
      ? `**What holds the ${method} tail back** (≤ ${TARGETS.addedP99Ms} ms added at p99 against (a) missed: ${signed(addedMs)} ms; p50 ${signed((p.chain.p50 ?? NaN) - (p.direct.p50 ?? NaN))} ms): ` +
        `at ${rate} req/s the chain's containers use ${round(meanOf('chain'), 2)} of this machine's ${cores} cores on average, (a)'s ${round(meanOf('direct'), 2)} (load clients: ${clientCores('chain')} and ${clientCores('direct')}). ` +
        `Each request waits its turn for a core in ${busyProcesses.length} processes in series (${busyProcesses.map(([n]) => n).join(', ')}) against ${Object.values(medianProfile(runs.direct, sideOf(sides, 'direct').tiers)).filter((ms) => ms >= 0.01).length} for (a); ` +
        `profile, ms of CPU per ${method} by process: ${profileText(chainProfile)}.` +
        checksText
      : undefined;
  const rows: ComparisonRow[] = [
    {
      scenario: `${method} ${method === 'POST' ? '/v1/records/notes' : '/v1/records/notes/{id}'}, open loop at ${rate} req/s (half the chain's median closed-loop throughput)`,
      metric: 'latency p50 / p99 / p99.9 ms, all rounds pooled; against: p99 the chain adds, pooled (per round median [min–max])',
      values: sides.map((s) => latencyText(p[s.key])),
      against: sides
        .filter((s) => s.key !== 'chain')
        .map((s) => `${signed(added(s.key))} ms (${spreadText(runs.chain.map((m, r) => roundP99(m) - roundP99(runs[s.key][r]!)))})`),
      target: `≤ ${TARGETS.addedP99Ms} ms added at p99 against (a)`,
      ...(Number.isFinite(addedMs) ? { met: addedMs <= TARGETS.addedP99Ms } : {}),
      note:
        `${c.BENCH_CHAIN_ROUNDS} rounds × ${c.BENCH_LATENCY_SECONDS} s per path; samples ${sides.map((s) => `${s.key} ${p[s.key].n}`).join(', ')}; ` +
        `95 % interval of the pooled p99: ${sides.map((s) => `${s.key} ${interval(s.key)}`).join(', ')}; ` +
        `achieved req/s ${sides.map((s) => `${s.key} ${spreadText(runs[s.key].map((m) => m.result.okPerSecond))}`).join(', ')}; ` +
        `errors: ${sides.map((s) => `${s.key} ${errorsOver(runs[s.key], expected)}`).join(', ')}; ` +
        `mean cores: ${sides.map((s) => `${s.key}: ${meanCores(runs[s.key], [...s.tiers, s.client])}`).join('; ')}; ` +
        `health checks (Docker's, every 5 s in each container that has one) against the slowest 1 %: ${sides.map((s) => `${s.key}: ${overlapText(overlap[s.key])}`).join('; ')}`,
    },
  ];
  return shortfall === undefined ? { rows } : { rows, shortfall };
}
