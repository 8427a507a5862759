import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import { lookupName, startListener, tcpProbe, type Runner } from '../support/stack/net-probe';
import type { Stack } from '../support/stack/stack';
import { countRecords } from '../support/stack/core-db';
import { impersonateGateway, IMPERSONATOR_QUEUE_PORT, restoreGateway } from '../support/stack/impersonated-gateway';
import type { ServiceSpec } from '../support/stack/compose-config';
import { gatewayMetrics, metricValue } from '../support/stack/gateway-door';
import { waitFor } from '../support/wait';

/**
 * An attacker who owns the gateway: commands run inside the gateway container as its own
 * user, with everything the gateway has — its files, its Redis credentials, its tunnels
 * (for the Redis attacks the gateway's process is replaced by the attacker's own SSH server
 * with the gateway's host key, which the broker connects to: support/stack/impersonated-gateway.ts).
 * It must not reach core, must not do anything with Redis beyond queueing requests and
 * reading its own replies, and must not be able to hurt the broker or core with garbage.
 */
describe('a compromised gateway', function () {
  this.timeout(600_000);
  let stack: Stack;
  /** nonstop_broker_redis_restarts before the Redis attacks. */
  let restartsBefore: number | undefined;

  /** Runs JavaScript inside the gateway with the gateway's node_modules. */
  const inGateway = async (code: string): Promise<unknown> => {
    const res = await stack.exec('gateway', ['node', '-e', code], { timeoutMs: 120_000 });
    if (res.exitCode !== 0) throw new Error(`gateway script failed: ${res.stderr}`);
    return JSON.parse(res.stdout) as unknown;
  };

  /** Opens the queue through the impersonator's bridge into the broker's tunnel, with the gateway's own password. */
  const redisPreamble = `
    const fs = require('fs');
    const { Redis } = require('/app/node_modules/ioredis');
    const password = fs.readFileSync('/var/lib/nonstop/queue.password', 'utf8').trim();
    const r = new Redis({ host: '127.0.0.1', port: ${IMPERSONATOR_QUEUE_PORT}, username: 'gateway-gw1', password, enableReadyCheck: false, disableClientInfo: true, maxRetriesPerRequest: 0, lazyConnect: true });
    r.on('error', () => {});
  `;

  /**
   * The same bridge and password as redisPreamble, spoken to byte by byte over a
   * plain socket, the way an attacker would: a length prefix Redis must refuse, then as
   * much of the payload as it takes.
   */
  const rawPreamble = `
    const fs = require('fs');
    const net = require('net');
    const password = fs.readFileSync('/var/lib/nonstop/queue.password', 'utf8').trim();
    const MiB = 1024 * 1024;
    const stream = 'nonstop:v2:gw:gw1:req';
    const bulk = (x) => '$' + Buffer.byteLength(x) + '\\r\\n' + x + '\\r\\n';
    const until = async (f, ms) => { const end = Date.now() + ms; while (Date.now() < end) { if (f()) return true; await new Promise((r) => setTimeout(r, 10)); } return f(); };
    const open = () => new Promise((resolve) => {
      const s = net.connect(${IMPERSONATOR_QUEUE_PORT}, '127.0.0.1');
      const c = { s, got: '', closed: false };
      s.on('data', (d) => { if (c.got.length < 4096) c.got += d.toString('latin1'); });
      s.on('error', () => {});
      s.on('close', () => { c.closed = true; });
      s.on('connect', () => resolve(c));
    });
    const write = async (c, data) => {
      if (c.closed) return false;
      if (c.s.write(data)) return true;
      await new Promise((r) => { const done = () => { c.s.off('drain', done); c.s.off('close', done); r(); }; c.s.on('drain', done); c.s.on('close', done); });
      return !c.closed;
    };
    const auth = async (c) => {
      await write(c, '*3\\r\\n' + bulk('AUTH') + bulk('gateway-gw1') + bulk(password));
      await until(() => c.got.includes('\\r\\n'), 10000);
      const ok = c.got.startsWith('+OK');
      c.got = '';
      return ok;
    };
  `;

  /** The broker's redis-server as the kernel sees it, read inside the broker container. */
  const brokerRedis = async (opts: { resetPeak?: boolean } = {}): Promise<{ pid: number; rss: number; rssPeak: number }> => {
    const code = `
      const fs = require('fs');
      const pid = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).find((p) => { try { return fs.readFileSync('/proc/' + p + '/comm', 'utf8').trim() === 'redis-server'; } catch { return false; } });
      if (!pid) throw new Error('no redis-server in the broker');
      // Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one.
      if (${opts.resetPeak === true}) fs.writeFileSync('/proc/' + pid + '/clear_refs', '5');
      const status = fs.readFileSync('/proc/' + pid + '/status', 'utf8');
      const kib = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+) kB$', 'm').exec(status)[1]) * 1024;
      console.log(JSON.stringify({ pid: Number(pid), rss: kib('VmRSS'), rssPeak: kib('VmHWM') }));
    `;
    const res = await stack.exec('broker', ['node', '-e', code]);
    if (res.exitCode !== 0) throw new Error(`broker script failed: ${res.stderr}`);
    return JSON.parse(res.stdout) as { pid: number; rss: number; rssPeak: number };
  };

  /** nonstop_broker_redis_restarts, read from the broker's own metrics endpoint; throws if it is not there. */
  const redisRestartsMetric = async (): Promise<number> => {
    const m = await stack.exec('broker', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => console.log(t))"]);
    const found = /^nonstop_broker_redis_restarts(?:\{[^}]*\})? (\d+)$/m.exec(m.stdout);
    if (!found) throw new Error(`no nonstop_broker_redis_restarts in the broker's metrics: ${m.stdout.slice(0, 300)} ${m.stderr}`);
    return Number(found[1]);
  };

  before(async () => {
    stack = await upStack();
    const api = await ApiClient.forStack(stack);
    const token = await createToken(stack, ['notes']);
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
  });

  after(async () => {
    await stack?.down();
  });

  it('holds no key, certificate or password that opens a tier behind it', async () => {
    const res = await stack.exec('gateway', ['sh', '-c', 'find /var/lib/nonstop /etc/nonstop /app -type f 2>/dev/null | grep -v node_modules | sort']);
    const files = res.stdout.trim().split('\n');
    assert.deepEqual(files.filter((f) => f.startsWith('/var/lib/nonstop')).sort(), [
      '/var/lib/nonstop/authorized_keys',
      // keygen's dates of the keys above, for the expiry metric: names, a hash prefix, dates.
      '/var/lib/nonstop/key-dates.json',
      '/var/lib/nonstop/knock.secret',
      // The used (window, nonce) pairs that keep a recorded knock from opening after a
      // restart: numbers, no secret (the HMAC key is knock.secret).
      '/var/lib/nonstop/knock/replay.json',
      '/var/lib/nonstop/queue.password',
      '/var/lib/nonstop/ssh/ssh_host_ed25519_key',
      '/var/lib/nonstop/tls/server.crt',
      '/var/lib/nonstop/tls/server.key',
    ]);
    // A PEM private key block with a body, in any text file (code that merely names the
    // marker does not count).
    const marker = '-----BEGIN [A-Z ]*PRIVATE KEY-----';
    const grep = await stack.exec('gateway', ['sh', '-c', `grep -rlI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -- '${marker}' / 2>/dev/null | while read -r f; do grep -A1 -- '${marker}' "$f" | grep -qE '^[A-Za-z0-9+/]{60}' && echo "$f"; done; true`], { timeoutMs: 180_000 });
    // Its own host key and TLS key only: no broker key, no client certificate, no CA key. The
    // TLS key twice: nginx serves a checked copy of the pair, on the run tmpfs (tls/served-pair.ts).
    assert.deepEqual(grep.stdout.trim().split('\n').sort(), ['/run/nonstop/nginx/tls/server.pem', '/var/lib/nonstop/ssh/ssh_host_ed25519_key', '/var/lib/nonstop/tls/server.key']);
  });

  it("keeps no socket into the broker's tunnel that another process could connect to: it listens on its own ports only, with a tunnel open", async () => {
    const env = Object.fromEntries((await stack.inspect('gateway')).Config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    const own = { HTTP_PORT: 80, HTTPS_PORT: 443, APP_PORT: 8080, METRICS_PORT: 9464, SSH_PORT: 2222 };
    const expected = Object.entries(own).map(([k, def]) => Number(env[k] ?? def)).sort((a, b) => a - b);
    // Positive control: a tunnel is open at the time of the scan (the before hook wrote through it).
    assert.ok(metricValue(await gatewayMetrics(stack), 'nonstop_tunnels_open') >= 1, 'no tunnel open');
    const res = await stack.exec('gateway', ['node', '-e', `
      const fs = require('fs');
      const ports = new Set();
      for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        for (const l of fs.readFileSync(f, 'utf8').split('\\n').slice(1)) {
          const x = l.trim().split(/\\s+/);
          // 0B00007F: 127.0.0.11, the Docker engine's DNS server, which listens in every container on a user network.
          if (x[3] === '0A' && !x[1].startsWith('0B00007F:')) ports.add(parseInt(x[1].split(':').pop(), 16));
        }
      }
      console.log(JSON.stringify([...ports].sort((a, b) => a - b)));
    `]);
    assert.equal(res.exitCode, 0, res.stderr);
    // Until issue 13, each tunnel added a 127.0.0.1 listener on an ephemeral port here.
    assert.deepEqual(JSON.parse(res.stdout), expected);
  });

  it('has no route to core, while it reaches a listener on its own network', async () => {
    const gateway: Runner = (cmd) => stack.exec('gateway', cmd);
    const coreIp = await stack.ip('core', 'private');
    // Positive controls with the same probes from the same container: a name on the edge
    // network resolves, and an open port on it connects.
    const peer = await stack.probe('edge');
    await startListener(stack.docker, peer, 9000);
    const peerIp = await stack.addressOf(peer);
    assert.deepEqual(await lookupName(gateway, 'broker'), { outcome: 'resolved', address: await stack.ip('broker', 'edge') });
    assert.equal(await tcpProbe(gateway, peerIp, 9000), 'connected');
    // No answer at all: neither a connection nor a reset from core's address.
    const core = await tcpProbe(gateway, coreIp, 8443);
    assert.ok(core === 'timeout' || core === 'unreachable', `core ${coreIp}:8443 answered the gateway: ${core}`);
    assert.equal((await lookupName(gateway, 'core')).outcome, 'not-found', 'the name core resolves for the gateway');
  });

  describe("from the gateway's host, through the broker's own tunnel to it", () => {
    let gateway: ServiceSpec;
    let deleteTarget: { token: string; id: string };

    before(async () => {
      const api = await ApiClient.forStack(stack);
      const token = await createToken(stack, ['notes'], 'read,write,delete');
      const created = await api.post('notes', { title: 'target of a compromised gateway' }, token);
      assert.equal(created.status, 201, created.text);
      deleteTarget = { token, id: (created.json as { id: string }).id };
      restartsBefore = await redisRestartsMetric();
      gateway = await impersonateGateway(stack);
    });

    after(async () => {
      if (gateway) await restoreGateway(stack, gateway);
    });

    it("is denied every dangerous Redis command with its own credentials, and other gateways' keys", async () => {
      const attempts: [string, ...string[]][] = [
        ['config', 'get', '*'], ['config', 'set', 'dir', '/tmp'], ['flushall'], ['flushdb'], ['keys', '*'], ['scan', '0'],
        ['eval', 'return 1', '0'], ['script', 'load', 'return 1'], ['function', 'list'], ['module', 'list'], ['debug', 'sleep', '0'],
        ['replicaof', '127.0.0.1', '1'], ['slaveof', 'no', 'one'], ['save'], ['bgsave'], ['shutdown'], ['client', 'list'], ['client', 'kill', 'type', 'normal'],
        ['migrate', '127.0.0.1', '1', 'k', '0', '1'], ['acl', 'list'], ['info'], ['monitor'],
        ['xrange', 'nonstop:v2:gw:gw1:req', '-', '+'], ['xreadgroup', 'GROUP', 'brokers', 'x', 'STREAMS', 'nonstop:v2:gw:gw1:req', '>'],
        ['getdel', 'nonstop:v2:gw:gw1:req:x'], ['subscribe', 'nonstop:v2:gw:gw2:replies'], ['xadd', 'nonstop:v2:gw:gw2:req', '*', 'e', 'x'],
        ['get', 'nonstop:v2:dead'], ['xrange', 'nonstop:v2:dead', '-', '+'], ['set', 'x', 'y'], ['publish', 'nonstop:v2:gw:gw1:replies', 'x'],
      ];
      const results = (await inGateway(`${redisPreamble}
        (async () => {
          await r.connect();
          const out = [];
          for (const a of ${JSON.stringify(attempts)}) {
            try { await r.call(...a); out.push([a.join(' '), 'ALLOWED']); } catch (e) { out.push([a.join(' '), e.message]); }
          }
          const ping = await r.ping();
          console.log(JSON.stringify({ out, ping }));
          r.disconnect();
        })();
      `)) as { out: [string, string][]; ping: string };
      assert.equal(results.ping, 'PONG', 'the gateway could not even reach its queue');
      for (const [cmd, outcome] of results.out) {
        assert.match(outcome, /NOPERM|not allowed|unknown command/i, `${cmd} was not denied: ${outcome}`);
      }
    });

    it('cannot crash the broker or store anything at core by flooding the queue with garbage', async () => {
      const before = { broker: (await stack.inspect('broker')).RestartCount, records: await countRecords(stack) };
      const sent = (await inGateway(`${redisPreamble}
        (async () => {
          await r.connect();
          // The last is an envelope just over MAX_ENVELOPE_BYTES (2 MiB), inside the margin Redis
          // still takes (proto-max-bulk-len): the broker dead-letters it as oversize.
          const garbage = ['not json', '{"v":2}', '{"v":1,"id":"x"}', JSON.stringify({ v: 2, id: '00000000-0000-4000-8000-000000000000', gw: 'gw2', budgetMs: 10000, method: 'POST', collection: 'notes', token: 'nst_x', body: '{}' }), 'x'.repeat(2 * 1024 * 1024 + 1024)];
          let n = 0;
          for (let i = 0; i < 1000; i++) { await r.xadd('nonstop:v2:gw:gw1:req', '*', 'e', garbage[i % garbage.length]); n++; }
          await r.xadd('nonstop:v2:gw:gw1:req', '*', 'nofield', 'x'); n++;
          console.log(JSON.stringify({ n }));
          r.disconnect();
        })();
      `)) as { n: number };
      assert.equal(sent.n, 1001);
      const poison = await waitFor('the broker to dead-letter the garbage', async () => {
        const m = await stack.exec('broker', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => console.log(t))"]);
        const total = [...m.stdout.matchAll(/^nonstop_broker_poison_total\{[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
        return total >= 1001 ? total : undefined;
      }, 120_000, 500);
      assert.ok(poison >= 1001);
      assert.equal((await stack.inspect('broker')).RestartCount, before.broker);
      assert.equal((await stack.inspect('broker')).State.Health?.Status, 'healthy');
      assert.equal(await countRecords(stack), before.records);
    });
    it('cannot list or erase with LIST and DELETE envelopes the broker does not take: operator objects and stray fields are dead-lettered, bad ids, queries and forged cursors refused, and the record stays until a valid DELETE (positive control)', async () => {
      const { token, id: target } = deleteTarget;
      const poisonTotal = async (): Promise<number> => {
        const m = await stack.exec('broker', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => console.log(t))"]);
        return [...m.stdout.matchAll(/^nonstop_broker_poison_total\{[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
      };
      const envelope = (fields: Record<string, unknown>): Record<string, unknown> => ({ v: 2, id: randomUUID(), gw: 'gw1', budgetMs: 20_000, collection: 'notes', token, ...fields });
      // Dead-lettered by the envelope decoder: no reply.
      const poisoned = [
        envelope({ method: 'LIST', query: { createdFrom: { $ne: 'x' } } }),
        envelope({ method: 'LIST', query: { limit: 1_000_000_000 } }),
        envelope({ method: 'LIST', query: { cursor: { $gt: '' } } }),
        envelope({ method: 'DELETE', recordId: target, filter: { _id: { $exists: true } } }),
        envelope({ method: 'DELETE', recordId: { $gt: '' } }),
      ];
      // Decoded, then refused by the broker's validator or by core: a reply each.
      const refused: [Record<string, unknown>, number, string][] = [
        [envelope({ method: 'DELETE', recordId: '{"$gt":""}' }), 400, 'bad_record_id'],
        [envelope({ method: 'DELETE', recordId: target, query: { limit: 1 } }), 400, 'bad_query'],
        [envelope({ method: 'DELETE', recordId: target, body: '{"_id":{"$exists":true}}' }), 400, 'bad_request'],
        [envelope({ method: 'LIST', query: { createdFrom: '{"$gt":""}' } }), 400, 'bad_query'],
        [envelope({ method: 'LIST', query: { cursor: Buffer.from('{"$gt":""}').toString('base64url') } }), 400, 'bad_cursor'],
        [envelope({ method: 'DELETE', collection: 'orders', recordId: target }), 403, 'forbidden'],
      ];
      const valid = envelope({ method: 'DELETE', recordId: target });
      const poisonBefore = await poisonTotal();

      const send = (envs: Record<string, unknown>[], awaitIds: string[]): Promise<unknown> =>
        inGateway(`${redisPreamble}
          (async () => {
            const sub = r.duplicate();
            sub.on('error', () => {});
            await r.connect();
            await sub.connect();
            const replies = {};
            sub.on('message', (_channel, text) => { try { const j = JSON.parse(text); replies[j.id] = { status: j.status, body: j.body }; } catch {} });
            await sub.subscribe('nonstop:v2:gw:gw1:replies');
            for (const e of ${JSON.stringify(envs)}) await r.xadd('nonstop:v2:gw:gw1:req', '*', 'e', JSON.stringify(e));
            const wanted = ${JSON.stringify(awaitIds)};
            const end = Date.now() + 60000;
            while (Date.now() < end && !wanted.every((id) => replies[id])) await new Promise((res) => setTimeout(res, 50));
            console.log(JSON.stringify(replies));
            sub.disconnect();
            r.disconnect();
          })().catch((e) => { console.error(e); process.exit(1); });
        `);

      const replies = (await send([...poisoned, ...refused.map(([e]) => e)], refused.map(([e]) => e.id as string))) as Record<string, { status: number; body: { error?: { code?: string } } }>;
      for (const [e, status, code] of refused) {
        const reply = replies[e.id as string];
        assert.ok(reply, `no reply to ${JSON.stringify(e).slice(0, 200)}`);
        assert.deepEqual([reply.status, reply.body.error?.code], [status, code], JSON.stringify(e).slice(0, 200));
      }
      for (const e of poisoned) assert.equal(replies[e.id as string], undefined, `a poisoned envelope was answered: ${JSON.stringify(e)}`);
      await waitFor('the broker to dead-letter the poisoned envelopes', async () => ((await poisonTotal()) >= poisonBefore + poisoned.length ? true : undefined), 60_000, 500);
      assert.equal(await countRecords(stack, { _id: target }), 1, 'the target was erased by a refused envelope');

      // Positive control: the same way in, a valid DELETE with the same token erases it.
      const ok = (await send([valid], [valid.id as string])) as Record<string, { status: number; body: unknown }>;
      assert.deepEqual(ok[valid.id as string], { status: 200, body: { id: target, erased: true } });
      assert.equal(await countRecords(stack, { _id: target }), 0);
    });

    it("cannot exhaust the broker's Redis with its own queue credentials: a 300 MB XADD argument, a half-sent 400 MB one and allowed-size arguments piled into one command are cut off, redis-server stays under REDIS_MAXMEMORY_BYTES and is never restarted", async () => {
      const maxmemory = Number((await stack.inspect('broker')).Config.Env.find((e) => e.startsWith('REDIS_MAXMEMORY_BYTES='))?.split('=')[1]);
      assert.ok(maxmemory > 0, 'REDIS_MAXMEMORY_BYTES not found in the broker');
      const before = { redis: await brokerRedis({ resetPeak: true }), restarts: await redisRestartsMetric(), container: (await stack.inspect('broker')).RestartCount };
      const out = (await inGateway(`${rawPreamble}
        async function oneArgument(argBytes, sendBytes, holdMs) {
          const c = await open();
          const authed = await auth(c);
          await write(c, '*5\\r\\n' + bulk('XADD') + bulk(stream) + bulk('*') + bulk('e') + '$' + argBytes + '\\r\\n');
          await until(() => c.got !== '' || c.closed, 2000);
          const chunk = Buffer.alloc(MiB, 0x78);
          let sent = 0;
          while (sent < sendBytes) { const n = Math.min(MiB, sendBytes - sent); if (!(await write(c, chunk.subarray(0, n)))) break; sent += n; }
          if (sent === argBytes) await write(c, '\\r\\n');
          await until(() => c.closed, holdMs);
          const r = { authed, reply: c.got.slice(0, 80), sent, closed: c.closed };
          c.s.destroy();
          return r;
        }
        async function manyArguments(valueBytes, pairs, sendPairs, holdMs) {
          const c = await open();
          const authed = await auth(c);
          await write(c, '*' + (3 + 2 * pairs) + '\\r\\n' + bulk('XADD') + bulk(stream) + bulk('*'));
          const pair = Buffer.concat([Buffer.from(bulk('f') + '$' + valueBytes + '\\r\\n'), Buffer.alloc(valueBytes, 0x78), Buffer.from('\\r\\n')]);
          let sent = 0;
          for (let i = 0; i < sendPairs; i++) { if (!(await write(c, pair))) break; sent += valueBytes; }
          await until(() => c.closed, holdMs);
          const r = { authed, reply: c.got.slice(0, 80), sent, closed: c.closed };
          c.s.destroy();
          return r;
        }
        (async () => {
          const huge = await oneArgument(300e6, 300e6, 5000);
          const half = await oneArgument(400e6, 200e6, 5000);
          const many = await manyArguments(2 * MiB, 144, 72, 5000);
          console.log(JSON.stringify({ huge, half, many }));
        })().catch((e) => { console.error(e); process.exit(1); });
      `)) as Record<'huge' | 'half' | 'many', { authed: boolean; reply: string; sent: number; closed: boolean }>;

      for (const [name, r] of Object.entries(out)) {
        assert.ok(r.authed, `${name}: the gateway's credentials were refused`);
        assert.ok(r.closed, `${name}: the connection was not cut (${JSON.stringify(r)})`);
      }
      assert.match(out.huge.reply, /^-ERR Protocol error: invalid bulk length/);
      assert.match(out.half.reply, /^-ERR Protocol error: invalid bulk length/);
      // The pile-up reached Redis through the tunnel (tens of MiB) and was cut long before
      // the 150 MB it tried to send.
      assert.ok(out.many.sent >= 8 * 1024 * 1024 && out.many.sent < 100 * 1024 * 1024, `many: ${out.many.sent} bytes sent`);

      const after = await brokerRedis();
      assert.equal(after.pid, before.redis.pid, 'redis-server was restarted');
      assert.ok(after.rssPeak < maxmemory, `redis-server's resident memory peaked at ${after.rssPeak} bytes, REDIS_MAXMEMORY_BYTES is ${maxmemory}`);
      // Positive control for the peak: the pile-up did take redis-server's memory up.
      assert.ok(after.rssPeak >= before.redis.rss + 8 * 1024 * 1024, `the peak did not move: ${JSON.stringify({ before: before.redis, after })}`);
      assert.equal(await redisRestartsMetric(), before.restarts);
      assert.equal((await stack.inspect('broker')).RestartCount, before.container);
    });
  });

  describe('after those attacks, with its own gateway back', () => {
    it("serves writes again once its own gateway is back, the broker's redis-server never restarted by the attacks above", async () => {
      const api = await ApiClient.forStack(stack);
      const token = await createToken(stack, ['notes']);
      await waitFor('a write through the public API', async () => (await api.post('notes', { title: 'after the redis attacks' }, token)).status === 201, 60_000, 250);
      assert.equal(await redisRestartsMetric(), restartsBefore);
    });

    // Last: it empties the queue. The checks above read nonstop_broker_redis_restarts and
    // redis-server's pid; this shows both see an in-container restart, which Docker's
    // restart count does not.
    it('counts a redis-server restart inside the broker in nonstop_broker_redis_restarts and a new pid, while Docker counts none (positive control for the checks above)', async () => {
      const before = { redis: await brokerRedis(), restarts: await redisRestartsMetric(), container: (await stack.inspect('broker')).RestartCount };
      const kill = await stack.exec('broker', ['node', '-e', `process.kill(${before.redis.pid}, 'SIGKILL')`]);
      assert.equal(kill.exitCode, 0, kill.stderr);
      await waitFor('the restart to be counted', async () => (await redisRestartsMetric()) === before.restarts + 1, 30_000, 250);
      const after = await waitFor('a new redis-server', async () => {
        const r = await brokerRedis().catch(() => undefined);
        return r && r.pid !== before.redis.pid ? r : undefined;
      }, 30_000, 250);
      assert.notEqual(after.pid, before.redis.pid);
      assert.equal((await stack.inspect('broker')).RestartCount, before.container);
      const api = await ApiClient.forStack(stack);
      const token = await createToken(stack, ['notes']);
      await waitFor('a write through the public API', async () => (await api.post('notes', { title: 'after a redis restart' }, token)).status === 201, 60_000, 250);
    });
  });
});
