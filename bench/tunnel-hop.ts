/**
 * The gateway's queue connections with and without a loopback hop (issue 13): the gateway's
 * real SSH server (GatewaySshServer) with OpenSSH's `ssh -R` as the broker's end in its own
 * process and a redis-server behind it, and two ioredis clients in this process on the same
 * tunnel, set up as the lane sets up its own:
 *
 *   before  ioredis → 127.0.0.1 listener → socket piped into a forwarded-tcpip channel (what
 *           Tunnel did until the connector; test/support/tunnel-bridge.ts keeps that code)
 *   after   ioredis → the channel itself, through tunnel/channel-connector.ts
 *
 * Each operation is what a request costs the gateway's queue connections: a PUBLISH of a
 * request-sized message on the command connection, received back on a subscribed one (as a
 * reply is). This process holds only the gateway side (ssh2 server, tunnel, ioredis), so its
 * CPU per operation is the figure; rounds alternate between the sides.
 *
 *   node dist/bench/tunnel-hop.js [rounds=6] [seconds=5] [concurrency=16]
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import { channelConnector } from '../services/gateway/tunnel/channel-connector';
import { Procs, startGateway, startRedis, startSsh, writeKeyPair } from '../test/support/ssh-fixtures';
import { tempDir } from '../test/support/tmp';
import { loopbackPortOf } from '../test/support/tunnel-bridge';
import { waitFor } from '../test/support/wait';
import { spreadText } from './stats';

type Side = 'before' | 'after';
const QUEUE_PORT = 6379;
const MESSAGE = randomBytes(180).toString('base64');


async function pair(opts: RedisOptions, channel: string): Promise<{ cmd: Redis; sub: Redis; waiters: Map<string, () => void> }> {
  const base: RedisOptions = { ...opts, enableReadyCheck: false, disableClientInfo: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, enableAutoPipelining: true, lazyConnect: true };
  const cmd = new Redis(base);
  const sub = new Redis(base);
  await cmd.connect();
  await sub.connect();
  const waiters = new Map<string, () => void>();
  sub.on('message', (_c: string, text: string) => {
    const id = text.slice(0, 16);
    waiters.get(id)?.();
    waiters.delete(id);
  });
  await sub.subscribe(channel);
  return { cmd, sub, waiters };
}

async function run(p: Awaited<ReturnType<typeof pair>>, channel: string, seconds: number, concurrency: number): Promise<{ ops: number; cpuUs: number }> {
  let ops = 0;
  const end = Date.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      const id = randomBytes(8).toString('hex');
      const got = new Promise<void>((resolve) => p.waiters.set(id, resolve));
      await p.cmd.publish(channel, `${id}${MESSAGE}`);
      await got;
      ops++;
    }
  };
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const used = process.cpuUsage(cpu);
  return { ops, cpuUs: used.user + used.system };
}

async function main(): Promise<void> {
  const [rounds = 6, seconds = 5, concurrency = 16] = process.argv.slice(2).map(Number);
  const files = tempDir('nonstop-bench-tunnel-hop-');
  const procs = new Procs();
  try {
    const redis = await startRedis(procs, files.dir);
    const hostKey = writeKeyPair(files.dir, 'host');
    const broker = writeKeyPair(files.dir, 'broker');
    const g = await startGateway({ hostKey, authorizedKeys: broker.publicKey, queuePort: QUEUE_PORT });
    startSsh(procs, broker, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${QUEUE_PORT}:127.0.0.1:${redis.port}`, '127.0.0.1']);
    const tunnel = await waitFor('the tunnel', () => g.tunnels[0], 15_000, 50);
    const sides: Record<Side, Awaited<ReturnType<typeof pair>>> = {
      before: await pair({ host: '127.0.0.1', port: await loopbackPortOf(tunnel) }, 'before'),
      after: await pair({ Connector: channelConnector(tunnel) }, 'after'),
    };
    // Warm both up (JIT, buffers) before anything is measured.
    for (const side of ['before', 'after'] as const) await run(sides[side], side, 1, concurrency);
    const results: Record<Side, { opsPerSecond: number; cpuUsPerOp: number }[]> = { before: [], after: [] };
    for (let r = 0; r < rounds; r++) {
      const order: Side[] = r % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
      for (const side of order) {
        const { ops, cpuUs } = await run(sides[side], side, seconds, concurrency);
        const row = { opsPerSecond: ops / seconds, cpuUsPerOp: cpuUs / ops };
        results[side].push(row);
        console.log(JSON.stringify({ round: r + 1, side, ...row, load1: loadavg()[0] }));
      }
    }
    for (const side of ['before', 'after'] as const) {
      const rows = results[side];
      console.log(`${side}: gateway CPU ${spreadText(rows.map((x) => x.cpuUsPerOp), 1)} µs per request-and-reply, ${spreadText(rows.map((x) => x.opsPerSecond), 0)} per s (median [min–max] over ${rows.length} rounds, ${concurrency} in flight)`);
    }
    const ratios = results.after.map((a, i) => a.cpuUsPerOp / results.before[i]!.cpuUsPerOp);
    console.log(`after/before CPU per operation, per round: ${spreadText(ratios, 2)}`);
    for (const side of Object.values(sides)) {
      side.cmd.disconnect();
      side.sub.disconnect();
    }
    await g.close();
  } finally {
    await procs.stopAll();
    files.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
