import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { loadBrokerConfig, type BrokerConfig } from '../../../../services/broker/config';
import { GatewaySet, redisLimitsFor, redisUserOf } from '../../../../services/broker/gateways/gateway-set';
import { GatewaysReloader } from '../../../../services/broker/gateways/reloader';
import { brokerMetrics, type BrokerMetrics } from '../../../../services/broker/metrics';
import { QueueConsumer } from '../../../../services/broker/queue/consumer';
import { RedisGatewayUsers } from '../../../../services/broker/redis/gateway-users';
import { startRedis, type BrokerRedisConf } from '../../../../services/broker/redis/server';
import type { ChildSupervisor } from '../../../../services/common/lifecycle/supervisor';
import { encodeRequest, decodeReply, type ReplyEnvelope } from '../../../../services/common/queue/envelope';
import { PROTOCOL_VERSION, queueKeys } from '../../../../services/common/queue/keys';
import { sha256Hex } from '../../../../services/common/pki/digest';
import { requireBinary } from '../../../support/binaries';
import { memoryLogger, silentLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

const FINGERPRINT = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';
const POLL_MS = 100;

/**
 * The broker's gateway-list reload against a real redis-server started as the broker starts
 * it (startRedis): GatewaySet, QueueConsumer, RedisGatewayUsers and GatewaysReloader wired
 * as main.ts wires them, following a real file. The gateways' tunnels point at closed
 * loopback ports (the keepers knock, fail and back off); what is checked is what a gateway
 * can do with its queue credentials, seen from real Redis connections.
 */
describe('broker gateway list reload (real redis-server)', function () {
  this.timeout(60_000);

  interface Fixture {
    config: BrokerConfig;
    redis: ChildSupervisor;
    port: number;
    brokerPassword: string;
    consumer: QueueConsumer;
    set: GatewaySet;
    reloader: GatewaysReloader;
    metrics: BrokerMetrics;
    logs: ReturnType<typeof memoryLogger>;
    passwords: Map<string, string>;
    /** `<gateway>:<request id>` of every request the consumer was handed. */
    handled: string[];
    writeList: (ids: string[], overrides?: Record<string, Record<string, unknown>>) => void;
    writeText: (text: string) => void;
  }

  let tmp: ReturnType<typeof tempDir>;
  let f: Fixture | undefined;
  const clients: Redis[] = [];

  async function fixture(initial: string[], pollMs = POLL_MS): Promise<Fixture> {
    const dir = tmp.dir;
    const passwords = new Map<string, string>();
    // Closed loopback ports: the keepers' knocks and SSH connections are refused there.
    const ports = { ssh: await freePort(), knock: [await freePort(), await freePort(), await freePort()] };
    const entry = (id: string, overrides: Record<string, unknown> = {}): Record<string, unknown> => {
      if (!passwords.has(id)) passwords.set(id, randomBytes(18).toString('base64url'));
      return { id, host: '127.0.0.1', sshPort: ports.ssh, hostKeyFingerprint: FINGERPRINT, queuePasswordSha256: sha256Hex(passwords.get(id)!), knock: { mode: 'static', ports: ports.knock }, ...overrides };
    };
    const listPath = join(dir, 'gateways.json');
    // Replaced whole, as an operator's tooling (or a ConfigMap) would: never seen half-written.
    const writeText = (text: string): void => {
      writeFileSync(`${listPath}.tmp`, text);
      renameSync(`${listPath}.tmp`, listPath);
    };
    const writeList = (ids: string[], overrides: Record<string, Record<string, unknown>> = {}): void => writeText(JSON.stringify({ gateways: ids.map((id) => entry(id, overrides[id])) }, null, 2));
    writeList(initial);
    for (const name of ['id_ed25519', 'ca.crt', 'client.crt', 'client.key']) writeFileSync(join(dir, name), 'unused by these tests\n');
    const port = await freePort();
    const config = loadBrokerConfig({
      BROKER_GATEWAYS_FILE: listPath,
      BROKER_GATEWAYS_POLL_MS: String(pollMs),
      SSH_KEY_FILE: join(dir, 'id_ed25519'),
      CORE_CA_FILE: join(dir, 'ca.crt'),
      CORE_CLIENT_CERT_FILE: join(dir, 'client.crt'),
      CORE_CLIENT_KEY_FILE: join(dir, 'client.key'),
      REDIS_PORT: String(port),
      REDIS_MAXMEMORY_BYTES: String(32 << 20),
      KNOCK_GAP_MS: '1',
      KNOCK_SETTLE_MS: '0',
      SSH_CONNECT_TIMEOUT_MS: '100',
      RECONNECT_BASE_MS: '100',
      RECONNECT_CAP_MS: '500',
    });
    const metrics = brokerMetrics(new Registry());
    const logs = memoryLogger();
    const brokerPassword = randomBytes(24).toString('base64url');
    const redisConf: BrokerRedisConf = {
      runDir: join(dir, 'run'),
      conf: { port, maxMemoryBytes: config.redis.maxMemoryBytes, gateways: config.gateways.map(redisUserOf), limits: redisLimitsFor(config, config.gateways.length) },
      brokerPassword,
      adminPassword: randomBytes(24).toString('base64url'),
    };
    const redis = await startRedis({ ...redisConf, binary: requireBinary('redis-server', '/usr/bin/redis-server', '/usr/local/bin/redis-server'), log: silentLogger() });
    const handled: string[] = [];
    const consumer = new QueueConsumer(
      { redis: { host: '127.0.0.1', port, username: 'broker', password: brokerPassword }, gatewayIds: config.gateways.map((g) => g.id), consumerName: 'c1', concurrency: 8, maxBudgetMs: 30_000, claimIdleMs: 3000, claimIntervalMs: 1000 },
      (e) => {
        handled.push(`${e.gw}:${e.id}`);
        return Promise.resolve<ReplyEnvelope>({ v: PROTOCOL_VERSION, id: e.id, status: 201, body: { id: e.id } });
      },
      metrics,
      silentLogger(),
    );
    const set = new GatewaySet(config, { users: new RedisGatewayUsers(redisConf), consumer, metrics, tunnelLog: silentLogger() });
    await consumer.start();
    set.start();
    const reloader = new GatewaysReloader(config.gatewaysFile, set, metrics, logs.log);
    reloader.start();
    return { config, redis, port, brokerPassword, consumer, set, reloader, metrics, logs, passwords, handled, writeList, writeText };
  }

  beforeEach(() => {
    tmp = tempDir('nonstop-reload-');
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    if (f) {
      await f.reloader.stop();
      f.set.stop();
      await f.consumer.stop();
      await f.redis.stop();
      f = undefined;
    }
    tmp.cleanup();
  });

  const fx = (): Fixture => {
    if (!f) throw new Error('no fixture');
    return f;
  };

  /** A connection authenticated as `username` (none: unauthenticated). ioredis reports a refused AUTH only as an 'error' event, so check with a command. */
  async function connect(username: string, password: string): Promise<Redis> {
    const c = new Redis({ host: '127.0.0.1', port: fx().port, ...(username ? { username, password } : {}), lazyConnect: true, enableReadyCheck: false, disableClientInfo: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    clients.push(c);
    await c.connect();
    return c;
  }

  /** A connection authenticated as gateway `id` with its password (or `password`). */
  async function asGateway(id: string, password = fx().passwords.get(id)!): Promise<Redis> {
    const c = await connect(`gateway-${id}`, password);
    assert.equal(await c.ping(), 'PONG');
    return c;
  }

  /**
   * Whether gateway `id` can authenticate now: AUTH on a fresh connection, as a gateway's
   * lane does. Only WRONGPASS counts as "no"; any other failure fails the test.
   */
  async function canAuth(id: string, password = fx().passwords.get(id)!): Promise<boolean> {
    const c = await connect('', '');
    try {
      assert.equal(await c.call('AUTH', `gateway-${id}`, password), 'OK');
      assert.equal(await c.ping(), 'PONG');
      return true;
    } catch (err) {
      if (/^WRONGPASS/.test((err as Error).message)) return false;
      throw err;
    } finally {
      c.disconnect();
    }
  }

  /** Resolves once the server closed the connection (it may have already); rejects if it is still open after `ms`. */
  function closedWithin(c: Redis, ms: number): Promise<void> {
    if (c.status === 'end') return Promise.resolve();
    return Promise.race([once(c, 'end').then(() => undefined), sleep(ms).then(() => Promise.reject(new Error(`connection still open after ${ms} ms (${c.status})`)))]);
  }

  const linesWith = (message: string) => fx().logs.lines.filter((l) => l.message === message);
  const REFUSED = 'BROKER_GATEWAYS_FILE refused; still serving the gateways it had';
  const reloaded = (n: number) => waitFor(`reload #${n} to be applied`, () => linesWith('BROKER_GATEWAYS_FILE reloaded').length >= n, 20_000, 20);
  const outcomes = async (): Promise<Record<string, number>> => Object.fromEntries((await fx().metrics.gatewayReloads.get()).values.map((v) => [String(v.labels.outcome), v.value]));
  const tunnelGauges = async (): Promise<string[]> => (await fx().metrics.tunnelUp.get()).values.map((v) => String(v.labels.gateway)).sort();

  async function maxclients(): Promise<number> {
    const b = await connect('broker', fx().brokerPassword);
    const m = /^maxclients:(\d+)/m.exec(await b.info('clients'));
    assert.ok(m, 'INFO clients has no maxclients');
    b.disconnect();
    return Number(m[1]);
  }

  /** Queues a request on gateway `id`'s stream (as `conn`, default: as that gateway) and says whether its reply came within `ms`. */
  async function answered(id: string, ms: number, conn?: Redis): Promise<boolean> {
    const requestId = randomUUID();
    const sub = await asGateway(id);
    await sub.subscribe(queueKeys.replies(id));
    const reply = new Promise<boolean>((resolve) => {
      sub.on('message', (_channel: string, text: string) => decodeReply(text).id === requestId && resolve(true));
      setTimeout(() => resolve(false), ms);
    });
    const sender = conn ?? (await asGateway(id));
    await sender.xadd(queueKeys.requests(id), '*', queueKeys.field, encodeRequest({ v: PROTOCOL_VERSION, id: requestId, gw: id, budgetMs: 10_000, method: 'GET', collection: 'notes', recordId: randomUUID(), token: 'x'.repeat(16) }));
    return reply;
  }

  it("cuts a removed gateway's open connections and refuses its AUTH, admits new gateways, re-sizes maxclients, and leaves the kept gateway's connection alone", async () => {
    f = await fixture(['gw-a', 'gw-b']);
    const keptConn = await asGateway('gw-a');
    const removedConn = await asGateway('gw-b');
    const removedSub = await asGateway('gw-b');
    await removedSub.subscribe(queueKeys.replies('gw-b'));
    f.passwords.set('gw-c', randomBytes(18).toString('base64url'));
    // Positive controls: a served gateway gets in; one not yet listed does not.
    assert.equal(await canAuth('gw-b'), true);
    assert.equal(await canAuth('gw-c'), false);
    assert.equal(await maxclients(), redisLimitsFor(f.config, 2).maxclients);
    await waitFor('the tunnel gauges of both gateways', async () => (await tunnelGauges()).join() === 'gw-a,gw-b');

    f.writeList(['gw-a', 'gw-c', 'gw-d']);
    await reloaded(1);
    await closedWithin(removedConn, 5000);
    await closedWithin(removedSub, 5000);
    assert.equal(await canAuth('gw-b'), false, "the removed gateway's password still opens Redis");
    assert.equal(await canAuth('gw-c'), true, 'an added gateway cannot authenticate');
    assert.equal(await canAuth('gw-d'), true, 'an added gateway cannot authenticate');
    assert.equal(await maxclients(), redisLimitsFor(f.config, 3).maxclients);
    assert.notEqual(redisLimitsFor(f.config, 3).maxclients, redisLimitsFor(f.config, 2).maxclients);
    // The kept gateway's connection is the same one, open and still allowed its XADD.
    assert.equal(keptConn.status, 'ready');
    assert.match(String(await keptConn.xadd(queueKeys.requests('gw-a'), '*', 'x', 'y')), /^\d+-\d+$/);
    assert.deepEqual(Object.keys(f.set.tunnelStates()).sort(), ['gw-a', 'gw-c', 'gw-d']);
    await waitFor('the tunnel gauges to follow the list', async () => (await tunnelGauges()).join() === 'gw-a,gw-c,gw-d');
    assert.deepEqual(await outcomes(), { applied: 1 });
  });

  it("reads a new gateway's stream and stops reading a removed one's, while the kept one is served throughout", async () => {
    f = await fixture(['gw-a', 'gw-b']);
    assert.equal(await answered('gw-b', 10_000), true, 'positive control: the served gateway is answered');
    assert.equal(await answered('gw-a', 10_000), true);
    f.writeList(['gw-a', 'gw-c']);
    await reloaded(1);
    assert.equal(await answered('gw-c', 10_000), true, 'the added gateway is not answered');
    assert.equal(await answered('gw-a', 10_000), true, 'the kept gateway is not answered any more');
    // Nothing queued for the removed gateway is taken any more (queued as the broker: its own user is gone).
    const before = f.handled.filter((h) => h.startsWith('gw-b:')).length;
    const broker = await connect('broker', f.brokerPassword);
    const requestId = randomUUID();
    await broker.xadd(queueKeys.requests('gw-b'), '*', queueKeys.field, encodeRequest({ v: PROTOCOL_VERSION, id: requestId, gw: 'gw-b', budgetMs: 10_000, method: 'GET', collection: 'notes', recordId: randomUUID(), token: 'x'.repeat(16) }));
    // Positive control in the same window: a request of a served gateway is answered.
    assert.equal(await answered('gw-a', 10_000), true);
    await sleep(1500);
    assert.equal(f.handled.filter((h) => h.startsWith('gw-b:')).length, before, 'the consumer still reads the removed gateway');
  });

  it('refuses a file that does not parse, does not validate, or is too large for Redis, each with one log line naming BROKER_GATEWAYS_FILE, and changes nothing', async () => {
    f = await fixture(['gw-a', 'gw-b']);
    const valid = { id: 'gw-a', host: '127.0.0.1', hostKeyFingerprint: FINGERPRINT, queuePasswordSha256: sha256Hex('x'), knock: { mode: 'static', ports: [7000, 8000, 9000] } };
    const bad: { text: string; problem: RegExp }[] = [
      { text: '{"gateways": [', problem: /^BROKER_GATEWAYS_FILE=".*gateways\.json": not valid JSON$/ },
      { text: JSON.stringify({ gateways: [{ id: 'gw-a' }] }), problem: /^BROKER_GATEWAYS_FILE=".*gateways\.json": .*gateways\.0\.host/ },
      { text: JSON.stringify({ gateways: [valid, valid] }), problem: /gateways\.1\.id gw-a appears twice/ },
      {
        text: JSON.stringify({ gateways: Array.from({ length: 1000 }, (_, i) => ({ ...valid, id: `g${i}` })) }),
        problem: /^BROKER_GATEWAYS_FILE=".*gateways\.json": 1000 gateways: REDIS_MAXMEMORY_BYTES=33554432: too small for 1000 gateway/,
      },
    ];
    for (const [i, b] of bad.entries()) {
      f.writeText(b.text);
      await waitFor(`refusal #${i + 1}`, () => linesWith(REFUSED).length >= i + 1, 20_000, 20);
      // Several polls later, still one line for this file: a bad file is not re-logged on every tick.
      await sleep(POLL_MS * 5);
      const lines = linesWith(REFUSED);
      assert.equal(lines.length, i + 1, `refusal #${i + 1} logged ${lines.length - i} times`);
      assert.match(String(lines[i]!.problem), b.problem);
      assert.equal(lines[i]!.level, 'error');
      assert.deepEqual(lines[i]!.gateways, ['gw-a', 'gw-b']);
      assert.equal(await canAuth('gw-a'), true);
      assert.equal(await canAuth('gw-b'), true);
      assert.deepEqual(Object.keys(f.set.tunnelStates()).sort(), ['gw-a', 'gw-b']);
    }
    assert.equal(await answered('gw-b', 10_000), true, 'the old list is not served any more');
    assert.deepEqual(await outcomes(), { refused: bad.length });
    // Positive control: the same follower applies the next good file.
    f.writeList(['gw-a']);
    await reloaded(1);
    assert.equal(await canAuth('gw-b'), false);
    assert.deepEqual(await outcomes(), { refused: bad.length, applied: 1 });

  });

  it("applies a changed password at once: the old one is refused and its open connections cut, the new one opens; another gateway's connection stays", async () => {
    f = await fixture(['gw-a', 'gw-b']);
    const oldPassword = f.passwords.get('gw-a')!;
    const oldConn = await asGateway('gw-a');
    const other = await asGateway('gw-b');
    const newPassword = randomBytes(18).toString('base64url');
    f.writeList(['gw-a', 'gw-b'], { 'gw-a': { queuePasswordSha256: sha256Hex(newPassword) } });
    await reloaded(1);
    await closedWithin(oldConn, 5000);
    assert.equal(await canAuth('gw-a', oldPassword), false, 'the old password still opens Redis');
    assert.equal(await canAuth('gw-a', newPassword), true, 'the new password does not');
    assert.equal(await other.ping(), 'PONG');
    assert.equal(other.status, 'ready');
    const line = linesWith('BROKER_GATEWAYS_FILE reloaded')[0]!;
    assert.deepEqual([line.added, line.removed, line.changed], [[], [], ['gw-a']]);
  });

  it('accepts both passwords during a queue-password rotation (two hashes) and keeps the open connections, then after retire (new hash only) refuses the old one and still keeps them', async () => {
    f = await fixture(['gw-a']);
    const oldPassword = f.passwords.get('gw-a')!;
    const oldConn = await asGateway('gw-a');
    const newPassword = randomBytes(18).toString('base64url');
    f.writeList(['gw-a'], { 'gw-a': { queuePasswordSha256: [sha256Hex(newPassword), sha256Hex(oldPassword)] } });
    await reloaded(1);
    assert.equal(await canAuth('gw-a', newPassword), true, 'the new password does not open Redis during the overlap');
    assert.equal(await canAuth('gw-a', oldPassword), true, 'the old password no longer opens Redis during the overlap');
    f.writeList(['gw-a'], { 'gw-a': { queuePasswordSha256: [sha256Hex(newPassword)] } });
    await reloaded(2);
    assert.equal(await canAuth('gw-a', oldPassword), false, 'the retired password still opens Redis');
    assert.equal(await canAuth('gw-a', newPassword), true, 'the new password does not');
    // Not cut at either step: the gateway moves its connections itself (gateway/queue/lane.ts).
    assert.equal(await oldConn.ping(), 'PONG');
    assert.equal(oldConn.status, 'ready');
  });

  it('rewrites redis.conf, so a redis-server that dies after a reload comes back with the new users, not the old', async () => {
    f = await fixture(['gw-a', 'gw-b']);
    f.passwords.set('gw-c', randomBytes(18).toString('base64url'));
    f.writeList(['gw-a', 'gw-c']);
    await reloaded(1);
    const restarted = once(f.redis, 'started');
    f.redis.signal('SIGKILL');
    await restarted;
    await waitFor('redis-server to answer again', () => canAuth('gw-a'), 10_000, 50);
    assert.equal(await canAuth('gw-c'), true, 'the restarted redis-server lost the added gateway');
    assert.equal(await canAuth('gw-b'), false, 'the restarted redis-server brought the removed gateway back');
    assert.equal(await maxclients(), redisLimitsFor(f.config, 2).maxclients);
  });

  it('reloads on SIGHUP without waiting for the poll, and says so', async () => {
    // A poll an hour apart: only the signal can apply the change within this test.
    f = await fixture(['gw-a', 'gw-b'], 3_600_000);
    f.writeList(['gw-a']);
    await sleep(500);
    assert.equal(await canAuth('gw-b'), true, 'applied without the signal: the poll is not what is being tested');
    process.kill(process.pid, 'SIGHUP');
    await reloaded(1);
    assert.equal(await canAuth('gw-b'), false);
    assert.equal(linesWith('BROKER_GATEWAYS_FILE reloaded')[0]!.trigger, 'SIGHUP');
  });
});
