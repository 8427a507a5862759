import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient } from '../test/support/stack/api-client';
import type { Stack } from '../test/support/stack/stack';
import { quantile, round } from './stats';
import type { Row } from './report';
import { benchSession, chainTarget, runLoad } from './load';
import { countLines, hostNoise, logLineAt, startedAndHealthy } from './readiness';

/**
 * A user on the host sending a POST through the chain every `everyMs`, without waiting for
 * the previous answer; resolves at the end of the first 201 that ends after `after()`.
 */
async function firstCreated(api: ApiClient, token: string, everyMs: number, after: () => number, timeoutMs = 60_000): Promise<{ at: number; sent: number }> {
  const deadline = Date.now() + timeoutMs;
  let sent = 0;
  let found: number | undefined;
  const inflight = new Set<Promise<void>>();
  while (found === undefined && Date.now() < deadline) {
    const p = api
      .post('notes', { title: `recovery ${sent}` }, token)
      .then((res) => {
        const end = Date.now();
        if (res.status === 201 && end >= after() && (found === undefined || end < found)) found = end;
      })
      .catch(() => undefined)
      .finally(() => inflight.delete(p));
    inflight.add(p);
    sent++;
    await sleep(everyMs);
  }
  await Promise.all(inflight);
  if (found === undefined) throw new Error(`no 201 within ${timeoutMs} ms`);
  return { at: found, sent };
}

const s = (msValue: number): string => String(round(msValue / 1000, 2));
const med = (xs: number[]): number => quantile(xs, 0.5);
const spread = (xs: number[]): string => xs.map((x) => s(x)).join(', ');

/**
 * How fast traffic flows again after a broker start and after a gateway restart, next to
 * the moment the restarted container itself says it is ready (log line, health check).
 */
export async function recoveryBench(stack: Stack, rounds: number): Promise<Row[]> {
  const { token, api } = await benchSession(stack);
  const noise = await hostNoise(stack);
  const broker = stack.container('broker');
  const gateway = stack.container('gateway');

  // (a) broker start → first request served.
  const toServed: number[] = [];
  const toReady: number[] = [];
  const toHealthy: number[] = [];
  const toTunnel: number[] = [];
  const failedA: number[] = [];
  const replayedA: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await broker.stop();
    let t0 = Infinity;
    const served = firstCreated(api, token, 50, () => t0);
    await sleep(500);
    t0 = Date.now();
    await broker.start();
    const { at } = await served;
    toServed.push(at - t0);
    toReady.push((await logLineAt(broker, 'broker ready', t0)) - t0);
    const tunnelUp = await logLineAt(broker, 'tunnel up', t0);
    toTunnel.push(tunnelUp - t0);
    toHealthy.push((await startedAndHealthy(broker, t0)).healthyAt - t0);
    failedA.push(await countLines(broker, 'tunnel attempt failed', t0, tunnelUp));
    replayedA.push(await countLines(gateway, 'replayed knock sequence refused', t0, tunnelUp));
  }
  const rows: Row[] = [];
  rows.push({
    scenario: 'broker container start → first request served (POST every 50 ms from the host)',
    metric: 'seconds, median of rounds',
    value: s(med(toServed)),
    baseline: `start → "broker ready" log line ${s(med(toReady))}`,
    ratio: round(med(toServed) / med(toReady)),
    target: '≤ 2 s',
    met: med(toServed) <= 2000 && Math.max(...toServed) <= 2000,
    note:
      `${rounds} rounds: served ${spread(toServed)} s; "broker ready" ${spread(toReady)} s; "tunnel up" ${spread(toTunnel)} s; ` +
      `Docker healthy ${spread(toHealthy)} s (health check every 5 s); broker tunnel attempts failed before "tunnel up": ${failedA.join(', ')} ` +
      `(gateway log "replayed knock sequence refused": ${replayedA.join(', ')}); met = every round within target; ${noise}`,
  });

  // (b) gateway restart → traffic flowing again, seen from a client on `edge` that keeps
  // sending (by name: the address survives the restart, the host port does not).
  const client = await chainTarget(stack, token);
  const fromStart: number[] = [];
  const fromCall: number[] = [];
  const readyFromStart: number[] = [];
  const healthyFromStart: number[] = [];
  const down: number[] = [];
  const failedB: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const load = runLoad(stack, client, {
      method: 'POST',
      path: '/v1/records/notes',
      host: 'gateway',
      rate: 20,
      seconds: 90,
      concurrency: 256,
      keepAlive: false,
      timeoutMs: 1000,
      timeline: true,
      stopWhenRecovered: 10,
    });
    await sleep(2000);
    const t0 = Date.now();
    await gateway.restart();
    const t1 = Date.now();
    const { startedAt, healthyAt } = await startedAndHealthy(gateway, t0);
    const ready = await logLineAt(gateway, 'gateway ready', startedAt);
    const res = await load;
    const served = (res.timeline ?? []).filter(([, end, status]) => status === 201 && end >= startedAt).map(([, end]) => end);
    if (served.length === 0) throw new Error(`no 201 after the gateway restart: ${JSON.stringify(res.statuses)}`);
    const first = Math.min(...served);
    fromStart.push(first - startedAt);
    fromCall.push(first - t0);
    readyFromStart.push(ready - startedAt);
    healthyFromStart.push(healthyAt - startedAt);
    down.push(startedAt - t0);
    failedB.push(await countLines(broker, 'tunnel attempt failed', t0, first));
    process.stdout.write(`  gateway round ${i + 1}: restart call ${t1 - t0} ms, statuses ${JSON.stringify(res.statuses)}\n`);
  }
  rows.push({
    scenario: 'gateway `docker restart` → first request served (new connection every 50 ms from a client on edge)',
    metric: 'seconds from the new gateway start (State.StartedAt), median of rounds',
    value: s(med(fromStart)),
    baseline: `start → "gateway ready" log line ${s(med(readyFromStart))}`,
    ratio: round(med(fromStart) / med(readyFromStart)),
    target: '≤ 3 s from the new gateway start',
    met: med(fromStart) <= 3000 && Math.max(...fromStart) <= 3000,
    note:
      `${rounds} rounds: from start ${spread(fromStart)} s; from the restart call ${spread(fromCall)} s (of which stop until the new start ${spread(down)} s); ` +
      `"gateway ready" ${spread(readyFromStart)} s and Docker healthy ${spread(healthyFromStart)} s after start; ` +
      `broker tunnel attempts failed meanwhile: ${failedB.join(', ')}; met = every round within target; ${noise}`,
  });
  return rows;
}
