import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS, DEFAULT_MAX_BUDGET_MS } from '../../../../services/broker/config';
import { brokerMetrics } from '../../../../services/broker/metrics';
import { QueueConsumer } from '../../../../services/broker/queue/consumer';
import { MAX_ENTRIES_PER_READ, MAX_QUEUE_CHANNELS_PER_GATEWAY, type RedisLimits } from '../../../../services/broker/redis/config';
import { encodeRequest, MAX_ENVELOPE_BYTES, type ReplyEnvelope } from '../../../../services/common/queue/envelope';
import { queueKeys } from '../../../../services/common/queue/keys';
import { silentLogger } from '../../../support/logger';
import { TestRedis } from '../../../support/redis-server';
import { waitFor } from '../../../support/wait';

/**
 * A compromised gateway against the broker's Redis, with the gateway's own credentials
 * and nothing else: the review's attacks (one 300 MB XADD argument; half of a 400 MB one,
 * held) and the next thing an attacker tries once single arguments are capped (many
 * arguments of the allowed size in one command). Each runs against a real redis-server
 * with the broker's rendered config, and the same attack, smaller, against Redis's own
 * defaults for these settings (what the broker rendered before) as the positive control:
 * there the memory goes past maxmemory and another gateway's XADD is refused.
 *
 * Memory is read from Redis (used_memory and its peak) and from the kernel (the process's
 * resident set and its high-water mark, /proc/<pid>/status), so a peak between two
 * samples is not missed.
 */

const MiB = 1024 * 1024;
const MAXMEMORY = 64 * MiB;
const ATTACKER = 'gw-a';
const VICTIM = 'gw-b';

/** Redis's defaults for every limit the broker now sets: the config the review attacked. */
const REDIS_DEFAULTS: RedisLimits = {
  protoMaxBulkLen: 512 * MiB,
  clientQueryBufferLimit: 1024 * MiB,
  maxmemoryClients: 0,
  clientMemoryWanted: 0,
  maxclients: 10_000,
  timeoutSeconds: 0,
  pubsub: { hardBytes: 32 * MiB, softBytes: 8 * MiB, softSeconds: 60 },
};

const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
const resp = (args: string[]): string => `*${args.length}\r\n${args.map(bulk).join('')}`;

/** A Redis connection spoken to byte by byte, the way an attacker would. */
class RawClient {
  received = '';
  isClosed = false;
  private destroyedByUs = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (b: Buffer) => {
      // Keep the start of what the server said; nothing here needs more.
      if (this.received.length < 4096) this.received += b.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (this.isClosed = true));
  }

  /** Closed by the server, not by this test. */
  get closedByServer(): boolean {
    return this.isClosed && !this.destroyedByUs;
  }

  static async open(port: number, who: { username: string; password: string }, opened: RawClient[]): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    const c = new RawClient(socket);
    opened.push(c);
    await once(socket, 'connect');
    await c.write(resp(['AUTH', who.username, who.password]));
    await waitFor('AUTH to be answered', () => c.received.startsWith('+OK\r\n'), 5000, 10);
    c.received = '';
    return c;
  }

  /** Waits until the kernel took `data`; false once the server has closed the connection. */
  async write(data: Buffer | string): Promise<boolean> {
    if (this.isClosed) return false;
    if (this.socket.write(data)) return true;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
    return !this.isClosed;
  }

  /** Stops reading: what the server sends waits in its output buffer. */
  pause(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.destroyedByUs = true;
    this.socket.destroy();
  }
}

/**
 * Announces one XADD argument of `argBytes` and sends `sendBytes` of it (all of it, and
 * the command's end, when they are equal); stops when the server hangs up. Returns what
 * the kernel took.
 */
async function oneHugeArgument(c: RawClient, argBytes: number, sendBytes: number): Promise<number> {
  await c.write(`*5\r\n${bulk('XADD')}${bulk(queueKeys.requests(ATTACKER))}${bulk('*')}${bulk('e')}$${argBytes}\r\n`);
  // A refusal of the length prefix comes at once; read it before the payload follows (a
  // server that closes with unread input resets the connection, and the reset discards
  // its answer). A server that takes the prefix says nothing: then stream after a moment.
  await waitFor('an answer to the length prefix', () => c.received !== '' || c.isClosed, 1000, 10).catch(() => undefined);
  const chunk = Buffer.alloc(MiB, 0x78);
  let sent = 0;
  while (sent < sendBytes) {
    const n = Math.min(chunk.length, sendBytes - sent);
    if (!(await c.write(chunk.subarray(0, n)))) break;
    sent += n;
  }
  if (sent === argBytes) await c.write('\r\n');
  return sent;
}

/**
 * Announces one XADD with `pairs` field/value pairs of `valueBytes` each (every one of
 * them within proto-max-bulk-len) and sends the first `sendPairs`; Redis holds them all
 * until the command is complete. Stops when the server hangs up; returns the value bytes
 * the kernel took.
 */
async function manyArguments(c: RawClient, valueBytes: number, pairs: number, sendPairs: number): Promise<number> {
  await c.write(`*${3 + 2 * pairs}\r\n${bulk('XADD')}${bulk(queueKeys.requests(ATTACKER))}${bulk('*')}`);
  const pair = Buffer.concat([Buffer.from(`${bulk('f')}$${valueBytes}\r\n`), Buffer.alloc(valueBytes, 0x78), Buffer.from('\r\n')]);
  let sent = 0;
  for (let i = 0; i < sendPairs; i++) {
    if (!(await c.write(pair))) break;
    sent += valueBytes;
  }
  return sent;
}

interface Memory {
  used: number;
  usedPeak: number;
  rss: number;
  rssPeak: number;
}

function infoField(info: string, name: string): number {
  const m = new RegExp(`^${name}:(\\d+)\\r?$`, 'm').exec(info);
  if (!m) throw new Error(`no ${name} in INFO`);
  return Number(m[1]);
}

async function memoryOf(redis: TestRedis, broker: Redis): Promise<Memory> {
  const info = await broker.info('memory');
  const status = readFileSync(`/proc/${redis.supervisor.pid}/status`, 'utf8');
  const kib = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} in /proc/${redis.supervisor.pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { used: infoField(info, 'used_memory'), usedPeak: infoField(info, 'used_memory_peak'), rss: kib('VmRSS'), rssPeak: kib('VmHWM') };
}

const fmt = (m: Memory): string => `used ${(m.used / MiB).toFixed(1)} MiB (peak ${(m.usedPeak / MiB).toFixed(1)}), RSS ${(m.rss / MiB).toFixed(1)} MiB (peak ${(m.rssPeak / MiB).toFixed(1)})`;

/** The other gateway: its lane's two connections, opened before the attack and watched for any close. */
interface Victim {
  cmd: Redis;
  sub: Redis;
  closes: string[];
  replies: string[];
}

async function openVictim(redis: TestRedis): Promise<Victim> {
  const v: Victim = { cmd: await redis.client({ gateway: VICTIM }), sub: await redis.client({ gateway: VICTIM }), closes: [], replies: [] };
  v.cmd.on('close', () => v.closes.push('cmd'));
  v.sub.on('close', () => v.closes.push('sub'));
  v.sub.on('message', (_ch: string, text: string) => v.replies.push(text));
  assert.equal(await v.sub.subscribe(queueKeys.replies(VICTIM)), 1);
  return v;
}

/** The other gateway is served: its XADD is taken and a reply published to it arrives, on the connections it had all along. */
async function assertVictimServed(v: Victim, broker: Redis): Promise<void> {
  assert.match(String(await v.cmd.xadd(queueKeys.requests(VICTIM), '*', queueKeys.field, '{}')), /^\d+-\d+$/);
  const text = `reply-${randomUUID()}`;
  assert.equal(await broker.publish(queueKeys.replies(VICTIM), text), 1);
  await waitFor('the reply to reach the other gateway', () => v.replies.includes(text), 5000, 10);
  assert.deepEqual(v.closes, [], 'a connection of the other gateway was closed');
}

describe('broker redis limits against a compromised gateway (real redis-server)', function () {
  this.timeout(120_000);
  let redis: TestRedis | undefined;
  let raw: RawClient[] = [];
  const stops: (() => unknown)[] = [];

  afterEach(async () => {
    for (const c of raw) c.destroy();
    raw = [];
    for (const stop of stops.splice(0).reverse()) await stop();
    await redis?.stop();
    redis = undefined;
  });

  async function start(limits?: Partial<RedisLimits>, inspector = false): Promise<{ r: TestRedis; broker: Redis; pid: number }> {
    redis = await TestRedis.start({ gateways: [ATTACKER, VICTIM], maxMemoryBytes: MAXMEMORY, inspector, ...(limits ? { limits } : {}) });
    const pid = redis.supervisor.pid;
    assert.ok(pid);
    return { r: redis, broker: await redis.client('broker'), pid };
  }

  const attacker = (r: TestRedis): Promise<RawClient> => RawClient.open(r.port, r.gateway(ATTACKER), raw);

  /** Same redis-server process, never restarted: a restart would have emptied every gateway's queue. */
  function assertNotRestarted(r: TestRedis, pid: number): void {
    assert.equal(r.supervisor.pid, pid, 'redis-server was restarted');
    assert.equal(r.supervisor.restarts, 0);
    assert.ok(r.supervisor.running);
  }

  /**
   * Under maxmemory for the whole process, and Redis's own count never far beyond the
   * client memory limit. Far: client accounting counts an argument's length, the
   * allocator hands out the next size class (a 2 MiB argument takes 2.5 MiB), and the
   * cut comes after the read that crossed the limit.
   */
  function assertBounded(r: TestRedis, before: Memory, after: Memory): void {
    assert.ok(after.rssPeak < MAXMEMORY, `redis-server's resident memory reached ${fmt(after)}`);
    assert.ok(after.usedPeak < MAXMEMORY, `redis's used memory reached ${fmt(after)}`);
    assert.ok(after.usedPeak <= before.used + 1.5 * r.limits.maxmemoryClients, `beyond the client memory limit: ${fmt(after)}`);
  }

  describe("with the broker's limits", () => {
    it('runs redis-server with every limit as the broker rendered it', async () => {
      const { r } = await start(undefined, true);
      const inspector = await r.client('inspector');
      const get = async (name: string): Promise<string> => ((await inspector.config('GET', name)) as string[])[1]!;
      assert.equal(await get('proto-max-bulk-len'), String(r.limits.protoMaxBulkLen));
      assert.equal(await get('client-query-buffer-limit'), String(r.limits.clientQueryBufferLimit));
      assert.equal(await get('maxmemory-clients'), String(r.limits.maxmemoryClients));
      assert.equal(await get('maxclients'), String(r.limits.maxclients));
      assert.equal(await get('timeout'), String(r.limits.timeoutSeconds));
      const p = r.limits.pubsub;
      assert.match(await get('client-output-buffer-limit'), new RegExp(`(^| )normal 0 0 0 .*pubsub ${p.hardBytes} ${p.softBytes} ${p.softSeconds}$`));
      assert.equal(await get('maxmemory'), String(MAXMEMORY));
    });

    it('refuses a 300 MB XADD argument at its length prefix: redis stays under maxmemory, is not restarted, and another gateway is still served', async () => {
      const { r, broker, pid } = await start();
      const victim = await openVictim(r);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      await oneHugeArgument(c, 300e6, 300e6);
      await waitFor('redis to hang up on the attacker', () => c.closedByServer, 10_000, 10);
      assert.match(c.received, /^-ERR Protocol error: invalid bulk length\r\n/);
      const after = await memoryOf(r, broker);
      assertBounded(r, before, after);
      assertNotRestarted(r, pid);
      await assertVictimServed(victim, broker);
    });

    it('cuts off a half-sent 400 MB argument at its length prefix: nothing is held for it, and another gateway is still served', async () => {
      const { r, broker, pid } = await start();
      const victim = await openVictim(r);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      await oneHugeArgument(c, 400e6, 200e6);
      await waitFor('redis to hang up on the attacker', () => c.closedByServer, 10_000, 10);
      assert.match(c.received, /^-ERR Protocol error: invalid bulk length\r\n/);
      const after = await memoryOf(r, broker);
      assertBounded(r, before, after);
      assertNotRestarted(r, pid);
      await assertVictimServed(victim, broker);
    });

    it('disconnects a gateway piling up allowed-size arguments in one command (300 MB announced, half sent) once client memory reaches its limit, and another gateway is still served', async () => {
      const { r, broker, pid } = await start();
      const victim = await openVictim(r);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      const value = MAX_ENVELOPE_BYTES;
      const sent = await manyArguments(c, value, Math.ceil(300e6 / value), Math.ceil(150e6 / value));
      await waitFor('redis to hang up on the attacker', () => c.closedByServer, 10_000, 10);
      // Cut well before half was sent: at the client memory limit, not at some other one.
      assert.ok(sent < r.limits.maxmemoryClients + 16 * MiB, `sent ${sent} bytes before the cut`);
      assert.ok(infoField(await broker.info('stats'), 'evicted_clients') >= 1, 'cut, but not by client eviction');
      const after = await memoryOf(r, broker);
      assertBounded(r, before, after);
      assertNotRestarted(r, pid);
      await assertVictimServed(victim, broker);
    });

    it("has a client slot for every gateway at the keeper's channel cap plus the broker's own connections, and none beyond", async () => {
      const { r, broker } = await start();
      // The broker client from start() is one of the broker's own.
      const held: RawClient[] = [];
      for (const gw of [ATTACKER, VICTIM]) for (let i = 0; i < MAX_QUEUE_CHANNELS_PER_GATEWAY; i++) held.push(await RawClient.open(r.port, r.gateway(gw), raw));
      const brokerOwn = r.limits.maxclients - 2 * MAX_QUEUE_CHANNELS_PER_GATEWAY;
      assert.ok(brokerOwn >= 2, `room for the consumer's reader and writer: ${brokerOwn}`);
      for (let i = 1; i < brokerOwn; i++) held.push(await RawClient.open(r.port, { username: 'broker', password: r.brokerPassword }, raw));
      assert.equal(await broker.ping(), 'PONG');
      for (const c of held) {
        c.received = '';
        await c.write(resp(['PING']));
      }
      await waitFor('every connection to answer', () => held.every((c) => c.received === '+PONG\r\n'), 5000, 10);
      // One more connection than that is refused by redis-server.
      const extra = connect(r.port, '127.0.0.1');
      extra.on('error', () => undefined);
      let said = '';
      let closed = false;
      extra.on('data', (b: Buffer) => (said += b.toString('latin1')));
      extra.on('close', () => (closed = true));
      try {
        await waitFor('redis to refuse one connection more', () => closed, 5000, 10);
      } finally {
        extra.destroy();
      }
      assert.match(said, /^-ERR max number of clients reached/);
    });

    it('drops a connection that goes silent in mid-command after the idle timeout, never a subscription idle between replies nor a lane that pings', async () => {
      // The broker's timeout (120 s by default) scaled down; the rule is the same.
      const { r, broker, pid } = await start({ timeoutSeconds: 2 });
      const victim = await openVictim(r);
      // Pings like a lane's command connection, every second.
      const pinger = setInterval(() => void victim.cmd.ping().catch(() => undefined), 1000);
      stops.push(() => clearInterval(pinger));
      let brokerClosed = false;
      broker.on('close', () => (brokerClosed = true));
      const c = await attacker(r);
      await oneHugeArgument(c, 2 * MiB, MiB);
      const since = Date.now();
      await waitFor('redis to drop the silent half-sent command', () => c.closedByServer, 15_000, 50);
      assert.ok(Date.now() - since >= 1500, 'dropped before the timeout');
      // Longer than the timeout again: the subscription and the pinging lane are still
      // there, while a plain connection left idle as long (start()'s broker client) is not.
      await sleep(3000);
      assert.ok(brokerClosed, 'an idle connection was not timed out');
      assertNotRestarted(r, pid);
      await assertVictimServed(victim, await r.client('broker'));
    });

    it('serves a gateway whose queue is full of its largest envelopes with no connection evicted, where reading them in one batch evicts every gateway: the consumer reads a few at a time, on connections marked no-evict', async () => {
      // More room for the queue than the broker's default, so that the queue can hold far
      // more than client memory may (the client limit is the same as with 64 MiB).
      redis = await TestRedis.start({ gateways: [ATTACKER, VICTIM], maxMemoryBytes: 2 * MAXMEMORY, inspector: true });
      const r = redis;
      assert.equal(r.limits.maxmemoryClients, r.limits.clientMemoryWanted);
      const fill = await openVictim(r);
      const count = 24;
      const ids: string[] = [];
      const body = 'x'.repeat(MAX_ENVELOPE_BYTES - 1024);
      for (let i = 0; i < count; i++) {
        const id = randomUUID();
        ids.push(id);
        const envelope = encodeRequest({ v: 2, id, gw: VICTIM, budgetMs: 60_000, method: 'POST', collection: 'notes', token: 'nst_x', body });
        assert.ok(Buffer.byteLength(envelope) <= MAX_ENVELOPE_BYTES);
        await fill.cmd.xadd(queueKeys.requests(VICTIM), '*', queueKeys.field, envelope);
      }

      // The control: a no-evict broker connection that takes the whole queue in one batch
      // (another consumer group, so the real one below still finds every entry) and reads
      // it slowly. Its buffer alone is over the limit: Redis evicts every other client.
      const control = await RawClient.open(r.port, { username: 'broker', password: r.brokerPassword }, raw);
      await control.write(resp(['CLIENT', 'NO-EVICT', 'ON']) + resp(['XGROUP', 'CREATE', queueKeys.requests(VICTIM), 'control', '0']));
      await waitFor('the control connection set up', () => control.received === '+OK\r\n+OK\r\n', 5000, 10);
      control.pause();
      await control.write(resp(['XREADGROUP', 'GROUP', 'control', 'c', 'COUNT', String(count), 'STREAMS', queueKeys.requests(VICTIM), '>']));
      await waitFor('Redis to evict the gateway', () => fill.closes.length === 2, 10_000, 20);
      control.destroy();
      const evictedByControl = infoField(await (await r.client('broker')).info('stats'), 'evicted_clients');
      assert.ok(evictedByControl >= 2);

      const victim = await openVictim(r);
      // Every read the consumer asks for, as redis-server sees it.
      const monitor = await (await r.client('inspector')).monitor();
      stops.push(() => monitor.disconnect());
      const readCounts: number[] = [];
      monitor.on('monitor', (_time: string, args: string[]) => {
        const name = args[0]?.toUpperCase();
        if (name !== 'XREADGROUP' && name !== 'XAUTOCLAIM') return;
        const at = args.findIndex((a) => a.toUpperCase() === 'COUNT');
        readCounts.push(Number(args[at + 1]));
      });
      const b = r.options('broker');
      const consumer = new QueueConsumer(
        {
          redis: { host: b.host!, port: b.port!, username: b.username!, password: b.password! },
          gatewayIds: [VICTIM],
          consumerName: 'limits-test',
          concurrency: 32,
          maxBudgetMs: DEFAULT_MAX_BUDGET_MS,
          claimIdleMs: DEFAULT_CLAIM_IDLE_MS,
          claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS,
        },
        async (envelope): Promise<ReplyEnvelope> => {
          await sleep(20);
          return { v: 2, id: envelope.id, status: 201, body: { ok: true } };
        },
        brokerMetrics(new Registry()),
        silentLogger(),
      );
      await consumer.start();
      stops.push(() => consumer.stop());
      const inspector = await r.client('inspector');
      const exempt = async (): Promise<string[]> =>
        String(await inspector.client('LIST'))
          .split('\n')
          .filter((l) => / user=broker /.test(l) && / flags=[A-Za-z]*e/.test(l))
          .map((l) => /^id=(\d+) /.exec(l)![1]!)
          .sort();
      const consumerConnections = await waitFor('the consumer to mark its two connections no-evict', async () => {
        const list = await exempt();
        return list.length === 2 ? list : undefined;
      }, 5000, 20);

      await waitFor(`every reply (${victim.replies.length} of ${count})`, () => victim.replies.length >= count, 60_000, 50);
      assert.deepEqual(victim.replies.map((t) => (JSON.parse(t) as ReplyEnvelope).id).sort(), [...ids].sort());
      assert.deepEqual(victim.closes, [], 'a connection of the gateway being served was closed');
      assert.deepEqual(await exempt(), consumerConnections, "the consumer's connections were replaced");
      assert.equal(infoField(await inspector.info('stats'), 'evicted_clients'), evictedByControl);
      // How: no read asked for more than a few entries, so it took several to empty the queue.
      assert.ok(readCounts.length >= count / MAX_ENTRIES_PER_READ, `${readCounts.length} reads`);
      assert.ok(readCounts.every((n) => n >= 1 && n <= MAX_ENTRIES_PER_READ), readCounts.join(','));
    });
  });

  describe("with Redis's defaults for these limits (the broker's config before): the positive control", () => {
    it('a complete 80 MB XADD argument takes redis past maxmemory', async () => {
      const { r, broker, pid } = await start(REDIS_DEFAULTS);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      await oneHugeArgument(c, 80e6, 80e6);
      await waitFor('the XADD to be answered', () => c.received.includes('\r\n'), 30_000, 10);
      // Read whole, then refused by maxmemory: too late, the memory was already taken.
      assert.match(c.received, /^-OOM /);
      const after = await memoryOf(r, broker);
      assert.ok(after.usedPeak > MAXMEMORY && after.rssPeak > MAXMEMORY, fmt(after));
      assert.throws(() => assertBounded(r, before, after));
      assertNotRestarted(r, pid);
    });

    it("a half-sent 128 MB argument holds more than maxmemory, and meanwhile another gateway's XADD is refused", async () => {
      const { r, broker } = await start(REDIS_DEFAULTS);
      const victim = await openVictim(r);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      await oneHugeArgument(c, 128e6, 40e6);
      const held = await waitFor('redis to hold the half-sent argument', async () => {
        const m = await memoryOf(r, broker);
        return m.used > MAXMEMORY ? m : undefined;
      }, 10_000, 50);
      assert.ok(!c.isClosed);
      assert.throws(() => assertBounded(r, before, held));
      await assert.rejects(victim.cmd.xadd(queueKeys.requests(VICTIM), '*', queueKeys.field, '{}'), /^ReplyError: OOM/);
    });

    it('allowed-size arguments piling up in one command (100 MiB announced, 80 sent) take redis past maxmemory, and nobody is cut', async () => {
      const { r, broker } = await start(REDIS_DEFAULTS);
      const before = await memoryOf(r, broker);
      const c = await attacker(r);
      await manyArguments(c, MiB, 100, 80);
      const held = await waitFor('redis to hold the arguments', async () => {
        const m = await memoryOf(r, broker);
        return m.used > MAXMEMORY ? m : undefined;
      }, 10_000, 50);
      assert.ok(!c.isClosed);
      assert.equal(infoField(await broker.info('stats'), 'evicted_clients'), 0);
      assert.throws(() => assertBounded(r, before, held));
    });
  });
});
