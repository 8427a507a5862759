import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { redisLimits } from '../../../../services/broker/redis/config';
import { startRedis } from '../../../../services/broker/redis/server';
import { queueKeys } from '../../../../services/common/queue/keys';
import { sha256Hex } from '../../../../services/common/pki/digest';
import type { ChildSupervisor } from '../../../../services/common/lifecycle/supervisor';
import { requireBinary } from '../../../support/binaries';
import { silentLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { TestRedis } from '../../../support/redis-server';
import { tempDir } from '../../../support/tmp';

type Arg = string | number;

const GW = 'gw-a';
const OTHER = 'gw-b';
const ownStream = queueKeys.requests(GW);
const otherStream = queueKeys.requests(OTHER);
/** A key under the gateway's own prefix that is not its stream: v2 gives it no key but that. */
const ownKey = `${queueKeys.requests(GW)}:x`;
const otherKey = `${queueKeys.requests(OTHER)}:x`;
const NOPERM = /^NOPERM/;

function errorOf(p: Promise<unknown>): Promise<Error> {
  return p.then(
    (v) => {
      throw new assert.AssertionError({ message: `expected a refusal, got ${JSON.stringify(v)}` });
    },
    (err: Error) => err,
  );
}

describe('broker redis ACL (real redis-server)', function () {
  this.timeout(20_000);
  let redis: TestRedis;
  const conns: Redis[] = [];

  before(async () => {
    redis = await TestRedis.start({ gateways: [GW, OTHER] });
  });
  after(async () => {
    await redis?.stop();
  });
  afterEach(() => {
    for (const c of conns.splice(0)) c.disconnect();
  });

  async function as(who: Parameters<TestRedis['client']>[0]): Promise<Redis> {
    const c = await redis.client(who);
    conns.push(c);
    return c;
  }

  describe('gateway user', () => {
    // Each row: what the gateway tries, and the refusal it must get (NOPERM unless stated).
    // DEBUG and MODULE LOAD are refused even before the ACL check: the config disables them
    // outright (enable-debug-command / enable-module-command no).
    const denied: { what: string; args: Arg[]; expect?: RegExp }[] = [
      { what: 'CONFIG GET', args: ['CONFIG', 'GET', 'maxmemory'] },
      { what: 'CONFIG SET', args: ['CONFIG', 'SET', 'maxmemory', '0'] },
      { what: 'MODULE LOAD', args: ['MODULE', 'LOAD', '/tmp/evil.so'], expect: /^(NOPERM|ERR MODULE command not allowed)/ },
      { what: 'MODULE LIST', args: ['MODULE', 'LIST'] },
      { what: 'EVAL', args: ['EVAL', 'return 1', '0'] },
      { what: 'EVALSHA', args: ['EVALSHA', 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db', '0'] },
      { what: 'EVAL_RO', args: ['EVAL_RO', 'return 1', '0'] },
      { what: 'FUNCTION LOAD', args: ['FUNCTION', 'LOAD', "#!lua name=evil\nredis.register_function('f', function() return 1 end)"] },
      { what: 'FUNCTION LIST', args: ['FUNCTION', 'LIST'] },
      { what: 'FUNCTION FLUSH', args: ['FUNCTION', 'FLUSH'] },
      { what: 'FCALL', args: ['FCALL', 'f', '0'] },
      { what: 'SCRIPT LOAD', args: ['SCRIPT', 'LOAD', 'return 1'] },
      { what: 'SCRIPT FLUSH', args: ['SCRIPT', 'FLUSH'] },
      { what: 'DEBUG', args: ['DEBUG', 'SLEEP', '0'], expect: /^(NOPERM|ERR DEBUG command not allowed)/ },
      { what: 'REPLICAOF', args: ['REPLICAOF', '127.0.0.1', '1'] },
      { what: 'SLAVEOF', args: ['SLAVEOF', '127.0.0.1', '1'] },
      { what: 'SAVE', args: ['SAVE'] },
      { what: 'BGSAVE', args: ['BGSAVE'] },
      { what: 'BGREWRITEAOF', args: ['BGREWRITEAOF'] },
      { what: 'FLUSHALL', args: ['FLUSHALL'] },
      { what: 'FLUSHDB', args: ['FLUSHDB'] },
      { what: 'KEYS *', args: ['KEYS', '*'] },
      { what: 'SCAN', args: ['SCAN', '0'] },
      { what: 'MIGRATE', args: ['MIGRATE', '127.0.0.1', '1', ownStream, '0', '1000'] },
      { what: 'CLIENT KILL', args: ['CLIENT', 'KILL', 'ID', '1'] },
      { what: 'CLIENT LIST', args: ['CLIENT', 'LIST'] },
      { what: 'SHUTDOWN', args: ['SHUTDOWN', 'NOSAVE'] },
      { what: 'ACL LIST', args: ['ACL', 'LIST'] },
      { what: 'ACL SETUSER', args: ['ACL', 'SETUSER', 'evil', 'on', '>pw', '~*', '+@all'] },
      { what: 'ACL WHOAMI', args: ['ACL', 'WHOAMI'] },
      { what: 'ACL GETUSER', args: ['ACL', 'GETUSER', 'broker'] },
      { what: 'MONITOR', args: ['MONITOR'] },
      { what: 'INFO', args: ['INFO'] },
      { what: 'SELECT 1', args: ['SELECT', '1'] },
      { what: 'GET of an arbitrary key', args: ['GET', 'somekey'] },
      { what: 'SET of an arbitrary key', args: ['SET', 'somekey', 'v'] },
      { what: 'XREAD of its own request stream', args: ['XREAD', 'STREAMS', ownStream, '0'] },
      { what: 'XRANGE of its own request stream', args: ['XRANGE', ownStream, '-', '+'] },
      { what: 'XLEN of its own request stream', args: ['XLEN', ownStream] },
      { what: "XADD to another gateway's request stream", args: ['XADD', otherStream, '*', queueKeys.field, '{}'] },
      { what: "GETDEL of a key under another gateway's prefix", args: ['GETDEL', otherKey] },
      { what: 'GETDEL of a key under its own prefix', args: ['GETDEL', ownKey] },
      { what: 'GETDEL of its own request stream key', args: ['GETDEL', ownStream] },
      { what: 'DEL of its own request stream', args: ['DEL', ownStream] },
      { what: 'XADD to another key under its own prefix', args: ['XADD', ownKey, '*', 'f', 'v'] },
      { what: 'SET of a key under its own prefix', args: ['SET', ownKey, 'forged'] },
      { what: 'XADD to the dead-letter stream', args: ['XADD', queueKeys.deadLetter, '*', 'f', 'v'] },
      { what: "SUBSCRIBE to another gateway's reply channel", args: ['SUBSCRIBE', queueKeys.replies(OTHER)] },
      { what: 'PSUBSCRIBE *', args: ['PSUBSCRIBE', '*'] },
      { what: 'PUBLISH on its own reply channel', args: ['PUBLISH', queueKeys.replies(GW), 'x'] },
    ];

    for (const row of denied) {
      it(`refuses ${row.what}`, async () => {
        const c = await as({ gateway: GW });
        const err = await errorOf(c.call(String(row.args[0]), ...row.args.slice(1)));
        assert.match(err.message, row.expect ?? NOPERM);
        // The connection is still usable and still the gateway (a refusal changes nothing).
        assert.equal(await c.ping(), 'PONG');
      });
    }

    it('is still answering after every refusal above (no SHUTDOWN, no REPLICAOF took effect)', async () => {
      const b = await as('broker');
      assert.equal(await b.ping(), 'PONG');
      const info = await b.info('replication');
      assert.match(info, /role:master/);
    });

    it('may PING', async () => {
      const c = await as({ gateway: GW });
      assert.equal(await c.ping(), 'PONG');
    });

    it('may XADD to its own request stream', async () => {
      const c = await as({ gateway: GW });
      const b = await as('broker');
      const before = await b.xlen(ownStream);
      const id = await c.xadd(ownStream, '*', queueKeys.field, '{}');
      assert.match(String(id), /^\d+-\d+$/);
      assert.equal(await b.xlen(ownStream), before + 1);
    });

    it('may SUBSCRIBE to its own reply channel and receives what the broker publishes there', async () => {
      const c = await as({ gateway: GW });
      assert.equal(await c.subscribe(queueKeys.replies(GW)), 1);
      const got = new Promise<string>((resolve) => c.once('message', (_ch: string, msg: string) => resolve(msg)));
      const b = await as('broker');
      assert.equal(await b.publish(queueKeys.replies(GW), 'req-1'), 1);
      assert.equal(await got, 'req-1');
    });

    it("cannot touch another gateway's stream even with XADD, while that gateway can", async () => {
      const mine = await as({ gateway: GW });
      const theirs = await as({ gateway: OTHER });
      await assert.rejects(mine.xadd(otherStream, '*', queueKeys.field, '{}'), /NOPERM/);
      assert.match(String(await theirs.xadd(otherStream, '*', queueKeys.field, '{}')), /^\d+-\d+$/);
    });
  });

  describe('authentication', () => {
    it('refuses every command of an unauthenticated connection (default user is off)', async () => {
      const c = await as('anonymous');
      await assert.rejects(c.ping(), /NOAUTH/);
      await assert.rejects(c.call('GET', 'x'), /NOAUTH/);
    });

    it('refuses the default user even with a password', async () => {
      const c = await as('anonymous');
      await assert.rejects(c.call('AUTH', 'default', 'anything'), /WRONGPASS/);
      await assert.rejects(c.call('AUTH', 'anything'), /WRONGPASS/);
    });

    it('refuses a gateway user with a wrong password', async () => {
      const c = await as('anonymous');
      await assert.rejects(c.call('AUTH', redis.gateway(GW).username, 'wrong-password'), /WRONGPASS/);
      await assert.rejects(c.ping(), /NOAUTH/);
    });

    it("refuses a gateway user with another gateway's password, and the broker user with a gateway's", async () => {
      const c = await as('anonymous');
      await assert.rejects(c.call('AUTH', redis.gateway(GW).username, redis.gateway(OTHER).password), /WRONGPASS/);
      await assert.rejects(c.call('AUTH', 'broker', redis.gateway(GW).password), /WRONGPASS/);
      assert.equal(await c.call('AUTH', redis.gateway(GW).username, redis.gateway(GW).password), 'OK');
      assert.equal(await c.ping(), 'PONG');
    });
  });

  describe('broker user', () => {
    it('can do what the consumer needs: XGROUP CREATE, XREADGROUP, XAUTOCLAIM, XCLAIM JUSTID, SET, PUBLISH, XACK, XDEL in MULTI/EXEC', async () => {
      const b = await as('broker');
      const stream = queueKeys.requests('gw-broker-test');
      assert.equal(await b.xgroup('CREATE', stream, queueKeys.group, '0', 'MKSTREAM'), 'OK');
      const entry = await b.xadd(stream, '*', queueKeys.field, '{}');
      const read = (await b.xreadgroup('GROUP', queueKeys.group, 'c1', 'COUNT', 10, 'STREAMS', stream, '>')) as [string, [string, string[]][]][];
      assert.equal(read[0]![1][0]![0], entry);
      const claimed = (await b.xautoclaim(stream, queueKeys.group, 'c2', 0, '0-0', 'COUNT', 10)) as [string, [string, string[]][]];
      assert.equal(claimed[1][0]![0], entry);
      // The consumer's heartbeat: keeps its own entry fresh.
      assert.deepEqual(await b.xclaim(stream, queueKeys.group, 'c2', 0, entry!, 'JUSTID'), [entry]);
      // The reply, the acknowledgement, the trim of expired entries, and Redis's clock.
      const res = await b
        .pipeline()
        .publish(queueKeys.replies('gw-broker-test'), '{"v":2}')
        .xack(stream, queueKeys.group, entry!)
        .xdel(stream, entry!)
        .xtrim(stream, 'MINID', 0)
        .time()
        .exec();
      assert.deepEqual(
        res!.map(([err]) => err),
        [null, null, null, null, null],
      );
      assert.deepEqual(
        res!.slice(0, 4).map(([, v]) => v),
        [0, 1, 1, 0],
      );
      assert.equal(await b.xlen(stream), 0);
    });

    const brokerDenied: { what: string; args: Arg[] }[] = [
      { what: 'FLUSHALL', args: ['FLUSHALL'] },
      { what: 'FLUSHDB', args: ['FLUSHDB'] },
      { what: 'CONFIG GET', args: ['CONFIG', 'GET', 'maxmemory'] },
      { what: 'CONFIG SET', args: ['CONFIG', 'SET', 'maxmemory', '0'] },
      { what: 'KEYS', args: ['KEYS', '*'] },
      { what: 'EVAL', args: ['EVAL', 'return 1', '0'] },
      { what: 'SHUTDOWN', args: ['SHUTDOWN', 'NOSAVE'] },
      { what: 'ACL SETUSER', args: ['ACL', 'SETUSER', 'evil', 'on', '>pw', '+@all'] },
      { what: 'SET outside the queue prefix', args: ['SET', 'elsewhere', 'v'] },
      // v2 stores no replies and needs no transaction: MULTI would be refused at maxmemory.
      { what: 'SET inside the queue prefix', args: ['SET', ownKey, 'v'] },
      { what: 'MULTI', args: ['MULTI'] },
    ];
    for (const row of brokerDenied) {
      it(`refuses the broker ${row.what}`, async () => {
        const b = await as('broker');
        const err = await errorOf(b.call(String(row.args[0]), ...row.args.slice(1)));
        assert.match(err.message, NOPERM);
      });
    }
  });

  describe('memory ceiling', () => {
    it("refuses the gateway's XADD with OOM once maxmemory is reached, evicts nothing, and still takes every command the broker needs to drain", async () => {
      const small = await TestRedis.start({ gateways: [GW], maxMemoryBytes: 2 * 1024 * 1024 });
      try {
        const gw = await small.client({ gateway: GW });
        const broker = await small.client('broker');
        await broker.xgroup('CREATE', ownStream, queueKeys.group, '0', 'MKSTREAM');
        const chunk = 'x'.repeat(64 * 1024);
        let accepted = 0;
        let refusal: Error | undefined;
        for (let i = 0; i < 200 && !refusal; i++) {
          try {
            await gw.xadd(ownStream, '*', queueKeys.field, chunk);
            accepted++;
          } catch (err) {
            refusal = err as Error;
          }
        }
        assert.ok(refusal, 'XADD was never refused');
        assert.match(refusal.message, /^OOM/);
        assert.ok(accepted > 0);
        // noeviction: every accepted entry is still there.
        assert.equal(await broker.xlen(ownStream), accepted);

        // Above maxmemory, the broker's whole cycle still works: read, keep alive, reply,
        // acknowledge, delete, trim. (v1 did these inside MULTI, which Redis refuses whole
        // at maxmemory: the queue wedged.) The positive control is the refusal above.
        const read = (await broker.xreadgroup('GROUP', queueKeys.group, 'c1', 'COUNT', 2, 'STREAMS', ownStream, '>')) as [string, [string, string[]][]][];
        const [first, second] = read[0]![1].map(([id]) => id);
        assert.deepEqual(await broker.xclaim(ownStream, queueKeys.group, 'c1', 0, first!, 'JUSTID'), [first]);
        assert.equal(await broker.publish(queueKeys.replies(GW), chunk), 0);
        assert.equal(await broker.xack(ownStream, queueKeys.group, first!, second!), 2);
        assert.equal(await broker.xdel(ownStream, first!, second!), 2);
        assert.equal(await broker.xtrim(ownStream, 'MINID', Date.now() + 60_000), accepted - 2);
        assert.equal(await broker.xlen(ownStream), 0);
        // Drained: the gateway's next request is taken again.
        assert.match(String(await gw.xadd(ownStream, '*', queueKeys.field, chunk)), /^\d+-\d+$/);
      } finally {
        await small.stop();
      }
    });
  });

  describe('persistence (startRedis)', () => {
    let runDir: { dir: string; cleanup: () => void };
    let child: ChildSupervisor | undefined;
    afterEach(async () => {
      await child?.stop();
      runDir?.cleanup();
    });

    it('leaves no dump.rdb or append-only file behind after SIGTERM, and its config holds only hashes', async () => {
      runDir = tempDir('nonstop-redis-run-');
      const port = await freePort();
      const brokerPassword = 'broker-secret-password-canary';
      const gwPassword = 'gateway-secret-password-canary';
      child = await startRedis({
        binary: requireBinary('redis-server', '/usr/bin/redis-server', '/usr/local/bin/redis-server'),
        runDir: runDir.dir,
        conf: {
          port,
          maxMemoryBytes: 16 * 1024 * 1024,
          gateways: [{ id: GW, username: `gateway-${GW}`, passwordSha256s: [sha256Hex(gwPassword)] }],
          limits: redisLimits({ gateways: 1, maxMemoryBytes: 16 * 1024 * 1024, maxBudgetMs: 30_000, claimIntervalMs: 1000 }),
        },
        brokerPassword,
        adminPassword: 'admin-secret-password-canary',
        log: silentLogger(),
      });
      const opts = { host: '127.0.0.1', port, enableReadyCheck: false, disableClientInfo: true, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null };
      const gw = new Redis({ ...opts, username: `gateway-${GW}`, password: gwPassword });
      const broker = new Redis({ ...opts, username: 'broker', password: brokerPassword });
      try {
        for (const c of [gw, broker]) c.on('error', () => undefined);
        await gw.connect();
        await broker.connect();
        for (let i = 0; i < 50; i++) await gw.xadd(ownStream, '*', queueKeys.field, `entry-${i}`);
        await broker.xadd(queueKeys.deadLetter, '*', 'reason', 'test');
        assert.equal(await broker.xlen(ownStream), 50);
      } finally {
        gw.disconnect();
        broker.disconnect();
      }
      await child.stop();
      child = undefined;

      const redisDir = join(runDir.dir, 'redis');
      const files = readdirSync(redisDir, { recursive: true }).map(String);
      assert.deepEqual(files, ['redis.conf']);
      assert.ok(!files.some((f) => /dump|\.rdb$|appendonly|\.aof$/.test(f)));
      const confPath = join(redisDir, 'redis.conf');
      assert.equal(statSync(confPath).mode & 0o777, 0o600);
      const conf = readFileSync(confPath, 'utf8');
      assert.ok(!conf.includes(brokerPassword) && !conf.includes(gwPassword) && !conf.includes('admin-secret-password-canary'), 'a plaintext password is in redis.conf');
      assert.ok(conf.includes(`#${sha256Hex(brokerPassword)}`));
    });
  });
});
