/**
 * The broker's queue consumer before and after a change, side by side (issue 13): two
 * QueueConsumer classes — this build's and one loaded from another build's dist (a git
 * worktree of the commit before) — each serving its own gateway on one real redis-server,
 * with a handler that answers at once, so only the queue work is measured. The load is
 * bench/tools/queue-load.js in its own process (XADD a GET envelope, wait for the published
 * reply, closed loop); this process's CPU per request is the consumer's. Rounds alternate.
 *
 *   node dist/bench/queue-answer.js <other build's dist dir> [rounds=6] [seconds=5] [concurrency=16]
 *
 * Prints one JSON line per round and a summary per side: consumer CPU µs per request and
 * requests/s, median [min–max] over the rounds, and the after/before ratio per round.
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS, DEFAULT_MAX_BUDGET_MS } from '../services/broker/config';
import { brokerMetrics } from '../services/broker/metrics';
import * as current from '../services/broker/queue/consumer';
import type { RequestEnvelope } from '../services/common/queue/envelope';
import { PROTOCOL_VERSION } from '../services/common/queue/keys';
import { silentLogger } from '../test/support/logger';
import { TestRedis } from '../test/support/redis-server';
import { spreadText } from './stats';

type Side = 'before' | 'after';
const LOAD = join(__dirname, '../../bench/tools/queue-load.js');


async function main(): Promise<void> {
  const [otherDist, ...rest] = process.argv.slice(2);
  if (!otherDist) throw new Error('usage: queue-answer.js <other build dist dir> [rounds] [seconds] [concurrency]');
  const [rounds = 6, seconds = 5, concurrency = 16] = rest.map(Number);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the other build is only known at run time
  const before = require(join(resolve(otherDist), 'services/broker/queue/consumer.js')) as typeof current;
  const redis = await TestRedis.start({ gateways: ['before', 'after'], maxMemoryBytes: 256 * 1024 * 1024 });
  const answer = (e: RequestEnvelope): Promise<{ v: typeof PROTOCOL_VERSION; id: string; status: number; body: unknown }> =>
    Promise.resolve({ v: PROTOCOL_VERSION, id: e.id, status: 404, body: { error: { code: 'not_found', message: 'no such record' } } });
  const b = redis.options('broker');
  const consumers = {
    before: new before.QueueConsumer(
      { redis: { host: b.host!, port: b.port!, username: b.username!, password: b.password! }, gatewayIds: ['before'], consumerName: 'before', concurrency: 64, maxBudgetMs: DEFAULT_MAX_BUDGET_MS, claimIdleMs: DEFAULT_CLAIM_IDLE_MS, claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS },
      answer,
      brokerMetrics(new Registry()),
      silentLogger(),
    ),
    after: new current.QueueConsumer(
      { redis: { host: b.host!, port: b.port!, username: b.username!, password: b.password! }, gatewayIds: ['after'], consumerName: 'after', concurrency: 64, maxBudgetMs: DEFAULT_MAX_BUDGET_MS, claimIdleMs: DEFAULT_CLAIM_IDLE_MS, claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS },
      answer,
      brokerMetrics(new Registry()),
      silentLogger(),
    ),
  };
  try {
    for (const c of Object.values(consumers)) await c.start();
    const run = async (side: Side, secs: number): Promise<{ ok: number; cpuUs: number }> => {
      const gw = redis.gateway(side);
      const cpu = process.cpuUsage();
      const { stdout } = await promisify(execFile)(process.execPath, [LOAD, String(redis.port), gw.username, gw.password, side, String(concurrency), String(secs)]);
      const used = process.cpuUsage(cpu);
      return { ok: (JSON.parse(stdout) as { ok: number }).ok, cpuUs: used.user + used.system };
    };
    for (const side of ['before', 'after'] as const) await run(side, 1);
    const results: Record<Side, { perSecond: number; cpuUsPerRequest: number }[]> = { before: [], after: [] };
    for (let r = 0; r < rounds; r++) {
      for (const side of (r % 2 === 0 ? ['before', 'after'] : ['after', 'before']) as Side[]) {
        const { ok, cpuUs } = await run(side, seconds);
        const row = { perSecond: ok / seconds, cpuUsPerRequest: cpuUs / ok };
        results[side].push(row);
        console.log(JSON.stringify({ round: r + 1, side, ...row, load1: loadavg()[0] }));
      }
    }
    for (const side of ['before', 'after'] as const) {
      const rows = results[side];
      console.log(`${side}: consumer CPU ${spreadText(rows.map((x) => x.cpuUsPerRequest), 1)} µs per request, ${spreadText(rows.map((x) => x.perSecond), 0)} per s (median [min–max] over ${rows.length} rounds, ${concurrency} in flight)`);
    }
    console.log(`after/before CPU per request, per round: ${spreadText(results.after.map((a, i) => a.cpuUsPerRequest / results.before[i]!.cpuUsPerRequest), 2)}`);
  } finally {
    for (const c of Object.values(consumers)) await c.stop();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
