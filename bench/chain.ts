import type Docker from 'dockerode';
import type { Stack } from '../test/support/stack/stack';
import { quantile, round } from './stats';
import type { Row } from './report';
import { hostNoise } from './readiness';
import { benchSession, chainTarget, coresText, directTarget, errorsText, runLoad, withCpu, type LoadResult, type Target } from './load';

export interface ChainBenchOptions {
  /** Measured seconds per closed-loop run (after `warmupSeconds`). */
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  /** Rounds (chain, then direct) and measured seconds per open-loop run at half the chain's peak. */
  halfLoadRounds: number;
  halfLoadSeconds: number;
}

const ms = (x: number | null): string => (x === null ? '—' : String(round(x, 1)));

interface Measured {
  run: LoadResult;
  cores: Record<string, number>;
}

/**
 * The whole chain (client → nginx TLS → gateway app → SSH tunnel → Redis → broker → core →
 * FerretDB) against the same requests sent straight to core's storage service, which is
 * what a client would get with no gateway and no broker in front of the data.
 */
export async function chainBench(stack: Stack, o: ChainBenchOptions): Promise<Row[]> {
  const { token, recordId } = await benchSession(stack);
  const chain = await chainTarget(stack, token);
  const direct = await directTarget(stack, token);
  const paths = { POST: '/v1/records/notes', GET: `/v1/records/notes/${recordId}` } as const;
  const expected = { POST: 201, GET: 200 } as const;
  const services = { gateway: stack.container('gateway'), broker: stack.container('broker'), core: stack.container('core') };
  const measure = async (t: Target, watch: Record<string, Docker.Container>, method: 'GET' | 'POST', rate?: number, connections = o.concurrency): Promise<Measured> => {
    const { result, cores } = await withCpu(watch, () =>
      runLoad(stack, t, {
        method,
        path: paths[method],
        concurrency: rate === undefined ? connections : 2 * connections,
        ...(rate === undefined ? { seconds: o.seconds, warmupSeconds: o.warmupSeconds } : { seconds: o.halfLoadSeconds, warmupSeconds: 1, rate }),
      }),
    );
    return { run: result, cores };
  };
  const chainWatch = { ...services, client: chain.client };
  const directWatch = { ...services, client: direct.client };

  const noise = await hostNoise(stack);
  const rows: Row[] = [];
  const peaks: Record<string, number> = {};
  const directPeaks: Record<string, number> = {};
  for (const method of ['POST', 'GET'] as const) {
    const c = await measure(chain, chainWatch, method);
    const d = await measure(direct, directWatch, method);
    peaks[method] = c.run.okPerSecond;
    directPeaks[method] = d.run.okPerSecond;
    const ratio = c.run.okPerSecond / d.run.okPerSecond;
    rows.push({
      scenario: `${method} ${method === 'POST' ? '/v1/records/notes' : '/v1/records/notes/{id}'}, closed loop, ${o.concurrency} connections`,
      metric: `throughput, ${expected[method]}s per second`,
      value: `${c.run.okPerSecond}`,
      baseline: `straight to core ${d.run.okPerSecond}`,
      ratio: round(ratio),
      target: '≥ 0.5 × straight to core',
      met: ratio >= 0.5,
      note:
        `${o.seconds} s each after ${o.warmupSeconds} s warm-up; errors chain ${errorsText(c.run, expected[method])}, direct ${errorsText(d.run, expected[method])}; ` +
        `CPU cores, chain run: ${coresText(c.cores)}; direct run: ${coresText(d.cores)}; ` +
        `CPU ms per request in the tiers: chain ${cpuPerRequest(c)}, direct ${cpuPerRequest(d)}; ` +
        `the tiers and the clients share this machine's cores, so the ratio compares the chain's whole CPU cost with core's alone; ${noise}`,
    });
    rows.push({
      scenario: `${method} at that peak (${o.concurrency} connections)`,
      metric: 'latency p50 / p99 ms (ratio of p50)',
      value: `${ms(c.run.latencyMs.p50)} / ${ms(c.run.latencyMs.p99)}`,
      baseline: `straight to core ${ms(d.run.latencyMs.p50)} / ${ms(d.run.latencyMs.p99)}`,
      ratio: round((c.run.latencyMs.p50 ?? NaN) / (d.run.latencyMs.p50 ?? NaN)),
      note: `closed loop: latency here is mostly queueing (connections ÷ throughput); p99 ratio ${round((c.run.latencyMs.p99 ?? NaN) / (d.run.latencyMs.p99 ?? NaN))}`,
    });
  }

  // Four times the connections: a chain bound by its latency (a fixed wait per request)
  // scales with them; one bound by CPU does not.
  const wide = 4 * o.concurrency;
  {
    const c = await measure(chain, chainWatch, 'POST', undefined, wide);
    const d = await measure(direct, directWatch, 'POST', undefined, wide);
    const ratio = c.run.okPerSecond / d.run.okPerSecond;
    rows.push({
      scenario: `POST /v1/records/notes, closed loop, ${wide} connections`,
      metric: 'throughput, 201s per second',
      value: `${c.run.okPerSecond}`,
      baseline: `straight to core ${d.run.okPerSecond}`,
      ratio: round(ratio),
      target: '≥ 0.5 × straight to core',
      met: ratio >= 0.5,
      note:
        `as above with ${wide} connections: chain ${round(c.run.okPerSecond / peaks.POST!, 2)}× its ${o.concurrency}-connection figure, direct ${round(d.run.okPerSecond / directPeaks.POST!, 2)}×; ` +
        `p50 / p99 ms chain ${ms(c.run.latencyMs.p50)} / ${ms(c.run.latencyMs.p99)}, direct ${ms(d.run.latencyMs.p50)} / ${ms(d.run.latencyMs.p99)}; ` +
        `errors chain ${errorsText(c.run, 201)}, direct ${errorsText(d.run, 201)}; CPU cores, chain run: ${coresText(c.cores)}; direct run: ${coresText(d.cores)}`,
    });
    peaks.POST = Math.max(peaks.POST!, c.run.okPerSecond);
  }

  // Both paths at the same fixed rate, half of what the chain can do: the latency the
  // chain adds when it is not saturated. Short runs, chain and direct taking turns, so a
  // burst of other work on the machine lands in one round rather than on one side; the
  // figure is the median over rounds of (chain p99 − direct p99).
  for (const method of ['POST', 'GET'] as const) {
    const rate = Math.max(1, Math.floor(peaks[method]! / 2));
    const cs: Measured[] = [];
    const ds: Measured[] = [];
    for (let i = 0; i < o.halfLoadRounds; i++) {
      cs.push(await measure(chain, chainWatch, method, rate));
      ds.push(await measure(direct, directWatch, method, rate));
    }
    const p = (xs: Measured[], q: 'p50' | 'p99'): number => median(xs.map((x) => x.run.latencyMs[q] ?? NaN));
    const addedEach = cs.map((c, i) => (c.run.latencyMs.p99 ?? NaN) - (ds[i]!.run.latencyMs.p99 ?? NaN));
    const added = median(addedEach);
    rows.push({
      scenario: `${method} at half the chain's peak (best closed-loop figure above): ${rate} req/s, open loop`,
      metric: 'p99 latency the chain adds, ms (median of rounds)',
      value: `+${round(added, 1)} (chain p50 ${ms(p(cs, 'p50'))} / p99 ${ms(p(cs, 'p99'))})`,
      baseline: `straight to core p50 ${ms(p(ds, 'p50'))} / p99 ${ms(p(ds, 'p99'))}`,
      ratio: round(p(cs, 'p99') / p(ds, 'p99')),
      target: '≤ 15 ms added at p99',
      met: added <= 15,
      note:
        `${o.halfLoadRounds} rounds of ${o.halfLoadSeconds} s each way after 1 s warm-up; added p99 per round ${addedEach.map((x) => round(x, 1)).join(', ')} ms; ` +
        `latency from each request's scheduled start; achieved ${median(cs.map((c) => c.run.okPerSecond))} vs ${median(ds.map((d) => d.run.okPerSecond))} req/s; ` +
        `errors chain ${cs.map((c) => errorsText(c.run, expected[method])).join('/')}, direct ${ds.map((d) => errorsText(d.run, expected[method])).join('/')}; ` +
        `mean CPU cores, chain runs: ${coresText(meanCores(cs))}; direct runs: ${coresText(meanCores(ds))}`,
    });
  }
  return rows;
}

/** CPU time the three tiers spent per answered request, e.g. "3.2 (gateway 0.7, ...)". */
function cpuPerRequest(m: Measured): string {
  const per = (name: string): number => ((m.cores[name] ?? 0) * 1000) / m.run.okPerSecond;
  const tiers = ['gateway', 'broker', 'core'];
  const total = tiers.reduce((sum, t) => sum + per(t), 0);
  return `${round(total)} (${tiers.map((t) => `${t} ${round(per(t))}`).join(', ')})`;
}

function median(xs: number[]): number {
  return quantile(xs, 0.5);
}

function meanCores(runs: Measured[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.cores)) out[k] = (out[k] ?? 0) + v / runs.length;
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, round(v)]));
}
