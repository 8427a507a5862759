import assert from 'node:assert/strict';
import { closedLoopRows, healthCheckOverlap, openLoopRows, type PathKey, type Run, type Runs, type Side } from '../../../bench/chain-rows';
import type { HostWindow } from '../../../bench/host';
import type { Measured } from '../../../bench/load';

const SIDES: Side[] = [
  { key: 'chain', tiers: ['gateway', 'broker', 'core'], client: 'edge client' },
  { key: 'direct', tiers: ['core'], client: 'private client' },
  { key: 'edge', tiers: ['edge nginx', 'core'], client: 'edge client' },
  { key: 'tunnel', tiers: ['public nginx', 'public sshd', 'hidden autossh', 'core'], client: 'edge client' },
];
const CONFIG = { BENCH_CONCURRENCY: 32, BENCH_CHAIN_ROUNDS: 3, BENCH_CHAIN_SECONDS: 6, BENCH_LATENCY_SECONDS: 10 };

/** One run: `okPerSecond` answers, latencies, and each container's cores split by process. */
function run(okPerSecond: number, byProcess: Record<string, Record<string, number>>, latency: number[] = [1, 2, 3]): Measured {
  const ours = Object.fromEntries(Object.entries(byProcess).map(([c, of]) => [c, Object.values(of).reduce((s, x) => s + x, 0)]));
  const host = { cores: 2, ours, oursByProcess: byProcess } as unknown as HostWindow;
  return {
    result: { seconds: 6, warmupSeconds: 1, windowStart: 0, windowEnd: 6000, sent: okPerSecond * 6, ok: okPerSecond * 6, failed: 0, statuses: { '200': okPerSecond * 6 }, okPerSecond, timeoutMs: 15_000, okMs: latency },
    latency,
    host,
    edgeSkewMs: 1,
  };
}

/** Three identical rounds of every path, the chain at `chainRate`, the baselines at theirs. */
function runs(chainRate: number, rates: Record<Exclude<PathKey, 'chain'>, number>, latency: Partial<Record<PathKey, number[]>> = {}): Runs {
  // The chain: 0.5 cores of gateway (nginx 0.2, node 0.3), 0.6 of broker (node 0.5, redis-server 0.1), core 0.4.
  const chain = { gateway: { nginx: 0.2, node: 0.3 }, broker: { node: 0.5, 'redis-server': 0.1 }, core: { node: 0.2, ferretdb: 0.2 }, 'edge client': { node: 0.2 } };
  const core = { core: { node: 0.5, ferretdb: 0.5 } };
  const three = (m: () => Measured): Measured[] => [m(), m(), m()];
  return {
    chain: three(() => run(chainRate, chain, latency.chain)),
    direct: three(() => run(rates.direct, core, latency.direct)),
    edge: three(() => run(rates.edge, { ...core, 'edge nginx': { nginx: 0.1 } }, latency.edge)),
    tunnel: three(() => run(rates.tunnel, { ...core, 'public nginx': { nginx: 0.1 }, 'public sshd': { sshd: 0.1 }, 'hidden autossh': { ssh: 0.1 } }, latency.tunnel)),
  };
}

describe('bench chain rows: targets and what holds a missed one back', () => {
  it('meets the GET target at ≥ 0.75× straight to core and ≥ 1.0× the ssh -R tunnel, and then says nothing of a shortfall', () => {
    const { rows, shortfall } = closedLoopRows('GET', 200, runs(800, { direct: 1000, edge: 900, tunnel: 800 }), SIDES, CONFIG);
    assert.equal(rows[0]!.target, '≥ 0.75 × (a) and ≥ 1 × (c)');
    assert.equal(rows[0]!.met, true);
    assert.deepEqual(rows[0]!.against, ['0.8 [0.8–0.8]×', '0.89 [0.89–0.89]×', '1 [1–1]×']);
    assert.equal(shortfall, undefined);
  });

  it('misses the POST target below 1.0× straight to core although it beats the tunnel, and names the target missed and the profile', () => {
    const { rows, shortfall } = closedLoopRows('POST', 201, runs(500, { direct: 1000, edge: 900, tunnel: 400 }), SIDES, CONFIG);
    assert.equal(rows[0]!.target, '≥ 1 × (a) and ≥ 1 × (c)');
    assert.equal(rows[0]!.met, false);
    assert.ok(shortfall);
    assert.match(shortfall, /1 × \(a\) straight to core missed: 0\.5×\)/);
    assert.doesNotMatch(shortfall, /\(c\) nginx \+ ssh -R missed/, 'the tunnel target was met');
    // CPU per request: chain 1.5 cores / 500 = 3 ms; direct 1 core / 1000 = 1 ms; tunnel 1.3 / 400 = 3.25 ms.
    assert.match(shortfall, /costs the chain 3 ms of CPU, \(a\) 1 ms, \(c\) 3\.25 ms/);
    // Largest first, equals by name: broker's node 0.5 cores / 500 per s = 1 ms.
    assert.match(shortfall, /chain: broker\/node 1, gateway\/node 0\.6, core\/ferretdb 0\.4, core\/node 0\.4, gateway\/nginx 0\.4, broker\/redis-server 0\.2;/);
    assert.match(shortfall, /\(a\): core\/ferretdb 0\.5, core\/node 0\.5;/);
    // Against (a) process by process: core's processes cost less per request on the chain (−0.1 each).
    assert.match(shortfall, /process by process: broker\/node \+1, gateway\/node \+0\.6, gateway\/nginx \+0\.4, broker\/redis-server \+0\.2, core\/ferretdb -0\.1, core\/node -0\.1\. /);
    // 1 × (a)'s 1 ms allows the chain 1 ms; core takes 0.8 of it, leaving 0.2 for the 2.2 ms the rest takes.
    assert.match(shortfall, /allows the chain 1 ms per POST: core's processes take 0\.8 ms of it on the chain's path, which leaves 0\.2 ms for .*; they take 2\.2 ms\.$/);
  });

  it('has a profile row with every path by process and the CPU the chain spends beyond each baseline', () => {
    const { rows } = closedLoopRows('GET', 200, runs(500, { direct: 1000, edge: 900, tunnel: 400 }), SIDES, CONFIG);
    const profile = rows.find((r) => r.metric.startsWith('profile'));
    assert.ok(profile);
    assert.equal(profile.values.length, 4);
    assert.equal(profile.values[1], 'core/ferretdb 0.5, core/node 0.5');
    assert.match(profile.values[3]!, /public nginx\/nginx 0\.25/);
    // Chain 1.5 cores / 500 = 3 ms; direct 1 ms; edge 1.1 / 900 = 1.22 ms; tunnel 1.3 / 400 = 3.25 ms.
    assert.deepEqual(profile.against, ['+2 ms', '+1.78 ms', '-0.25 ms']);
  });

  it('meets the tail target at ≤ 10 ms added p99 and misses it above, naming the processes a request waits in', () => {
    const fast = Array.from({ length: 2000 }, (_, i) => 1 + (i % 100) / 100);
    const slower = (ms: number): number[] => fast.map((x, i) => (i % 100 >= 98 ? x + ms : x));
    const within = openLoopRows('GET', 200, 250, runs(250, { direct: 250, edge: 250, tunnel: 250 }, { chain: slower(8), direct: fast, edge: fast, tunnel: fast }), SIDES, CONFIG);
    assert.equal(within.rows[0]!.target, '≤ 10 ms added at p99 against (a)');
    assert.equal(within.rows[0]!.met, true);
    assert.equal(within.shortfall, undefined);

    const beyond = openLoopRows('GET', 200, 250, runs(250, { direct: 250, edge: 250, tunnel: 250 }, { chain: slower(30), direct: fast, edge: fast, tunnel: fast }), SIDES, CONFIG);
    assert.equal(beyond.rows[0]!.met, false);
    assert.ok(beyond.shortfall);
    assert.match(beyond.shortfall, /^\*\*What holds the GET tail back\*\* \(≤ 10 ms added at p99 against \(a\) missed: \+30 ms/);
    assert.match(beyond.shortfall, /containers use 1\.5 of this machine's 2 cores on average, \(a\)'s 1 \(load clients: 0\.2 and 0\)/);
    assert.match(beyond.shortfall, /in 6 processes in series \(.*\) against 2 for \(a\)/);
  });

  it('counts how many of the slowest 1 % overlapped a health check, against all requests, and says so in the tail paragraph', () => {
    // 200 requests 10 ms apart, 1 ms each, but the two that overlap the check at [1000, 1150] take 40 ms.
    const timeline: [number, number, number][] = Array.from({ length: 200 }, (_, i) => {
      const start = i * 10;
      return [start, start + (start >= 990 && start <= 1000 ? 40 : 1), 200];
    });
    const m = (checks: boolean): Run => {
      const r = run(250, { gateway: { node: 0.5 }, broker: { node: 0.5 }, core: { node: 0.5 } }, timeline.map(([a, b]) => b - a));
      r.result.timeline = timeline;
      return checks ? { ...r, healthChecks: [{ container: 'core', start: 1000, end: 1150 }] } : { ...r, healthChecks: [] };
    };
    const o = healthCheckOverlap([m(true)]);
    // The slowest 2 (1 % of 200, rounded up) both overlap; so do 17 of all (starts 990 … 1150).
    assert.deepEqual(o, { slow: 2, slowDuring: 2, all: 200, allDuring: 17, checkMs: [150] });
    assert.equal(healthCheckOverlap([m(false)])?.slowDuring, 0, 'no check, no overlap');
    assert.equal(healthCheckOverlap([run(250, {})]), undefined, 'no timeline: nothing to say');

    const slowTail = Array.from({ length: 2000 }, (_, i) => (i % 100 >= 98 ? 40 : 1));
    const rs = runs(250, { direct: 250, edge: 250, tunnel: 250 }, { chain: slowTail, direct: slowTail.map(() => 1), edge: slowTail.map(() => 1), tunnel: slowTail.map(() => 1) });
    // Every path's timeline met the check; latencies: the chain's tail at 40 ms, the others' flat at 1.
    for (const k of ['chain', 'direct', 'edge', 'tunnel'] as const) rs[k] = rs[k].map(() => ({ ...m(true), latency: k === 'chain' ? slowTail : slowTail.map(() => 1) }));
    const { shortfall, rows } = openLoopRows('GET', 200, 250, rs, SIDES, CONFIG);
    assert.ok(shortfall);
    assert.match(shortfall, /Of the chain's slowest 1 % of requests, 6 of its slowest 6 \(100 %\) overlapped a health check, against 9 % of all 600 requests: Docker's HEALTHCHECK execs `nonstop-healthcheck` in each container every 5 s, 150–150 ms each here/);
    assert.match(rows[0]!.note, /health checks .* against the slowest 1 %: chain: 6 of its slowest 6/);
  });
});
