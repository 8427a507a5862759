import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS } from '../../../services/broker/config';
import { brokerMetrics, type BrokerMetrics } from '../../../services/broker/metrics';
import { QueueConsumer, type ConsumerOptions, type RequestHandler } from '../../../services/broker/queue/consumer';
import { NonstopError } from '../../../services/common/errors/nonstop-error';
import type { Logger } from '../../../services/common/log/logger';
import { encodeRequest, MAX_ENVELOPE_BYTES, type ReplyEnvelope, type RequestEnvelope } from '../../../services/common/queue/envelope';
import { queueKeys } from '../../../services/common/queue/keys';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../../../services/common/queue/timing';
import { gatewayMetrics, type GatewayMetrics } from '../../../services/gateway/metrics';
import { Dispatcher } from '../../../services/gateway/queue/dispatcher';
import type { Tunnel } from '../../../services/gateway/tunnel/tunnel';
import { memoryLogger, silentLogger } from '../../support/logger';
import { freePort } from '../../support/ports';
import { TestRedis } from '../../support/redis-server';
import { waitFor } from '../../support/wait';

const GW = 'gw-a';
const OTHER = 'gw-b';
const STREAM = queueKeys.requests(GW);

/** What the Dispatcher and Lane use of a Tunnel: an id, the local port, the peer, and 'closed'. */
class StandInTunnel extends EventEmitter<{ closed: [] }> {
  readonly peer = { name: 'broker-test', address: '127.0.0.1' };
  constructor(
    readonly id: string,
    readonly localPort: number,
  ) {
    super();
  }
  get tunnel(): Tunnel {
    return this as unknown as Tunnel;
  }
}

/** A promise the test resolves when it wants a held handler to answer. */
class Gate {
  private readonly waiters: (() => void)[] = [];
  private opened = false;
  wait(): Promise<void> {
    if (this.opened) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  open(): void {
    this.opened = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

function envelope(over: Partial<RequestEnvelope> = {}): RequestEnvelope {
  const now = Date.now();
  return { v: 1, id: randomUUID(), gw: GW, at: now, deadline: now + DEFAULT_REQUEST_TIMEOUT_MS, method: 'POST', collection: 'notes', token: 'nst_0123456789abcdef_token', body: '{"text":"hello"}', ...over };
}

function created(e: RequestEnvelope, by = 'broker'): ReplyEnvelope {
  return { v: 1, id: e.id, status: 201, body: { id: e.id, by } };
}

async function counterValue(metric: { get: () => Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((sum, v) => sum + v.value, 0);
}

function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

async function rejection(p: Promise<unknown>): Promise<NonstopError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof NonstopError, `expected a NonstopError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the promise to reject');
}

describe('queue protocol end to end (QueueConsumer + Dispatcher on a real redis-server)', function () {
  this.timeout(20_000);
  let cleanups: (() => unknown)[] = [];
  const gates: Gate[] = [];

  afterEach(async () => {
    for (const g of gates.splice(0)) g.open();
    const list = cleanups.reverse();
    cleanups = [];
    for (const c of list) await c();
  });

  async function startRedis(opts: { maxMemoryBytes?: number; port?: number; sameSecretsAs?: TestRedis } = {}): Promise<TestRedis> {
    const r = await TestRedis.start({ gateways: [GW, OTHER], inspector: true, ...opts });
    cleanups.push(() => r.stop());
    return r;
  }

  async function startConsumer(
    r: TestRedis,
    handler: RequestHandler,
    opts: Partial<ConsumerOptions> & { log?: Logger } = {},
  ): Promise<{ consumer: QueueConsumer; metrics: BrokerMetrics }> {
    const metrics = brokerMetrics(new Registry());
    const { log, ...rest } = opts;
    const b = r.options('broker');
    const consumer = new QueueConsumer(
      {
        redis: { host: b.host!, port: b.port!, username: b.username!, password: b.password! },
        gatewayIds: [GW],
        consumerName: `consumer-${randomUUID().slice(0, 8)}`,
        concurrency: 8,
        replyTtlMs: 10_000,
        claimIdleMs: DEFAULT_CLAIM_IDLE_MS,
        claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS,
        ...rest,
      },
      handler,
      metrics,
      log ?? silentLogger(),
    );
    await consumer.start();
    cleanups.push(() => consumer.stop());
    return { consumer, metrics };
  }

  /** A consumer in its own process (test/support/queue-consumer-process.ts), holding every request. */
  async function startConsumerProcess(
    r: TestRedis,
    by: string,
  ): Promise<{ requests: string[]; handed: (id: string) => Promise<void>; release: (id: string) => void; kill: () => Promise<void> }> {
    const b = r.options('broker');
    const options: ConsumerOptions & { by: string } = {
      redis: { host: b.host!, port: b.port!, username: b.username!, password: b.password! },
      gatewayIds: [GW],
      consumerName: `${by}-${randomUUID().slice(0, 8)}`,
      concurrency: 8,
      replyTtlMs: 10_000,
      claimIdleMs: DEFAULT_CLAIM_IDLE_MS,
      claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS,
      by,
    };
    const child = spawn(process.execPath, [join(__dirname, '../../support/queue-consumer-process.js')], {
      env: { ...process.env, NONSTOP_TEST_CONSUMER: JSON.stringify(options) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    const kill = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    };
    cleanups.push(kill);
    const requests: string[] = [];
    let started = false;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as { event: string; id?: string };
      if (event.event === 'started') started = true;
      if (event.event === 'request') requests.push(event.id!);
    });
    await waitFor('the consumer process to start', () => {
      if (child.exitCode !== null) throw new Error(`the consumer process exited with ${child.exitCode}`);
      return started;
    }, 15_000, 20);
    return {
      requests,
      handed: (id) => waitFor(`request ${id} at the consumer process`, () => requests.includes(id), 10_000, 20).then(() => undefined),
      release: (id) => child.stdin.write(`release ${id}\n`),
      kill,
    };
  }

  function startDispatcher(r: TestRedis, log: Logger = silentLogger()): { dispatcher: Dispatcher; metrics: GatewayMetrics } {
    const metrics = gatewayMetrics(new Registry());
    const g = r.gateway(GW);
    const dispatcher = new Dispatcher(GW, { username: g.username, password: g.password }, 2000, metrics, log);
    cleanups.push(() => dispatcher.close());
    return { dispatcher, metrics };
  }

  async function addLane(d: Dispatcher, port: number, id = `tunnel-${randomUUID().slice(0, 8)}`): Promise<StandInTunnel> {
    const before = d.readyLanes;
    const t = new StandInTunnel(id, port);
    d.addTunnel(t.tunnel);
    await waitFor('the queue lane to be ready', () => d.readyLanes === before + 1, 10_000, 20);
    return t;
  }

  async function inspector(r: TestRedis): Promise<Redis> {
    return r.client('inspector');
  }

  async function pendingCount(admin: Redis, stream = STREAM): Promise<number> {
    const [count] = (await admin.xpending(stream, queueKeys.group)) as [number, ...unknown[]];
    return count;
  }

  /** Opens every gate at cleanup time, before the consumers are stopped (stop waits for handlers). */
  function gate(): Gate {
    const g = new Gate();
    gates.push(g);
    return g;
  }

  it('carries a request to the handler intact and its reply back, leaving no reply key and no stream entry', async () => {
    const r = await startRedis();
    const seen: RequestEnvelope[] = [];
    await startConsumer(r, (e) => {
      seen.push(e);
      return Promise.resolve(created(e));
    });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);

    const post = envelope({ body: JSON.stringify({ text: 'ünïcödé ✓', n: [1, 2, 3] }) });
    const get = envelope({ method: 'GET', recordId: randomUUID(), body: undefined });
    delete get.body;
    assert.deepEqual(await dispatcher.submit(post), created(post));
    assert.deepEqual(await dispatcher.submit(get), created(get));

    assert.deepEqual(seen, [post, get]);
    const admin = await inspector(r);
    assert.equal(await admin.exists(queueKeys.reply(GW, post.id), queueKeys.reply(GW, get.id)), 0);
    assert.equal(await admin.xlen(STREAM), 0);
    assert.equal(await pendingCount(admin), 0);
  });

  it('refuses a request with no_tunnel (503) when no lane is ready', async () => {
    const { dispatcher } = startDispatcher(await startRedis());
    const none = await rejection(dispatcher.submit(envelope()));
    assert.equal(none.code, 'no_tunnel');
    assert.equal(none.status, 503);

    // A tunnel whose far end does not answer gives a lane that never becomes ready.
    const mem = memoryLogger();
    const { dispatcher: d2 } = startDispatcher(await startRedis(), mem.log);
    const dead = new StandInTunnel('dead', await freePort());
    d2.addTunnel(dead.tunnel);
    await waitFor('a failed connection attempt', () => mem.lines.some((l) => l.message === 'queue connection error'));
    assert.equal(d2.openLanes, 1);
    assert.equal(d2.readyLanes, 0);
    const err = await rejection(d2.submit(envelope()));
    assert.equal(err.code, 'no_tunnel');
    assert.equal(err.status, 503);
  });

  it("makes a lane ready once the broker's redis answers, even if it did not when the tunnel came up", async () => {
    const first = await startRedis();
    await first.stopServer();
    const mem = memoryLogger();
    const { dispatcher } = startDispatcher(first, mem.log);
    const t = new StandInTunnel('early', first.port);
    dispatcher.addTunnel(t.tunnel);
    await waitFor('a failed connection attempt', () => mem.lines.some((l) => l.message === 'queue connection error'));
    assert.equal(dispatcher.readyLanes, 0);

    const r = await startRedis({ port: first.port, sameSecretsAs: first });
    await startConsumer(r, (e) => Promise.resolve(created(e)));
    await waitFor('the queue lane to be ready', () => dispatcher.readyLanes === 1, 10_000, 20);
    const e = envelope();
    assert.deepEqual(await dispatcher.submit(e), created(e));
  });

  it('answers deadline_exceeded (504) at the deadline of a request whose handler never answers', async () => {
    const r = await startRedis();
    const never = gate();
    const reached: string[] = [];
    await startConsumer(r, async (e) => {
      reached.push(e.id);
      await never.wait();
      return created(e);
    });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const e = envelope({ deadline: Date.now() + 400 });
    const err = await rejection(dispatcher.submit(e));
    assert.ok(Date.now() >= e.deadline, 'rejected before the deadline');
    assert.equal(err.code, 'deadline_exceeded');
    assert.equal(err.status, 504);
    assert.deepEqual(reached, [e.id]);
  });

  it('dead-letters every kind of poison message with its reason and no payload, and keeps serving', async () => {
    const r = await startRedis();
    const mem = memoryLogger();
    const handled: string[] = [];
    const { metrics } = await startConsumer(
      r,
      (e) => {
        handled.push(e.id);
        return Promise.resolve(created(e));
      },
      { log: mem.log },
    );
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);

    const canary = `poison-canary-${randomUUID()}`;
    const broker = await r.client('broker');
    const expected = new Map<string, string>();
    const put = async (reason: string, ...fields: string[]): Promise<void> => {
      expected.set((await broker.xadd(STREAM, '*', ...fields))!, reason);
    };
    await put('bad_json', queueKeys.field, `{not json ${canary}`);
    await put('unknown_version', queueKeys.field, JSON.stringify({ ...envelope(), v: 2, body: canary }));
    await put('oversize', queueKeys.field, JSON.stringify({ ...envelope(), body: canary + 'x'.repeat(MAX_ENVELOPE_BYTES) }));
    await put('bad_shape', 'x', encodeRequest(envelope({ body: canary })));
    await put('bad_shape', queueKeys.field, encodeRequest(envelope({ gw: OTHER, body: canary })));
    await put('bad_shape', queueKeys.field, JSON.stringify({ ...envelope(), [canary]: canary }));

    const valid = envelope();
    assert.deepEqual(await dispatcher.submit(valid), created(valid));
    assert.deepEqual(handled, [valid.id]);

    const admin = await inspector(r);
    await waitFor('all poison dead-lettered', async () => (await admin.xlen(queueKeys.deadLetter)) === expected.size);
    const dead = (await admin.xrange(queueKeys.deadLetter, '-', '+')).map(([, f]) => fieldMap(f));
    for (const d of dead) {
      assert.deepEqual(Object.keys(d).sort(), ['at', 'detail', 'entry', 'gateway', 'reason']);
      assert.equal(d.reason, expected.get(d.entry!), `entry ${d.entry} dead-lettered as ${d.reason}`);
      assert.equal(d.gateway, GW);
      assert.ok(!JSON.stringify(d).includes(canary), 'payload copied into the dead-letter stream');
    }
    assert.deepEqual(new Set(dead.map((d) => d.entry)), new Set(expected.keys()));
    assert.equal(await admin.xlen(STREAM), 0);
    assert.equal(await pendingCount(admin), 0);
    assert.equal(await counterValue(metrics.poison, { reason: 'bad_shape' }), 3);
    assert.equal(await counterValue(metrics.poison, { reason: 'oversize' }), 1);
    assert.equal(await counterValue(metrics.poison, { reason: 'bad_json' }), 1);
    assert.equal(await counterValue(metrics.poison, { reason: 'unknown_version' }), 1);
    assert.ok(!mem.text().includes(canary), 'payload logged');
  });

  it('handles each of 300 concurrent requests exactly once across two consumers, losing none', async () => {
    const r = await startRedis();
    const seen = new Map<string, number>();
    const byConsumer = [0, 0];
    const handler = (which: number): RequestHandler => async (e) => {
      seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
      byConsumer[which]!++;
      await sleep(1);
      return created(e, `c${which}`);
    };
    await startConsumer(r, handler(0), { concurrency: 8 });
    await startConsumer(r, handler(1), { concurrency: 8 });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);

    const envelopes = Array.from({ length: 300 }, () => envelope());
    const replies = await Promise.all(envelopes.map((e) => dispatcher.submit(e)));
    assert.deepEqual(
      replies.map((x) => x.id),
      envelopes.map((e) => e.id),
    );
    assert.equal(seen.size, 300);
    assert.deepEqual([...new Set(seen.values())], [1]);
    assert.ok(byConsumer[0]! > 0 && byConsumer[1]! > 0, `work not shared: ${byConsumer.join('/')}`);
    assert.equal(byConsumer[0]! + byConsumer[1]!, 300);
    const admin = await inspector(r);
    assert.equal(await admin.xlen(STREAM), 0);
    assert.equal(await pendingCount(admin), 0);
  });

  it('answers a request whose consumer was killed holding it from another consumer, before the default deadline, with the default claim settings', async function () {
    this.timeout(60_000);
    const r = await startRedis();
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const holder = await startConsumerProcess(r, 'holder');

    const e = envelope();
    const reply = dispatcher.submit(e);
    await holder.handed(e.id);
    // Started only now, so that the request went to the holder.
    const handled: string[] = [];
    const { metrics } = await startConsumer(r, (x) => {
      handled.push(x.id);
      return Promise.resolve(created(x, 'rescuer'));
    });
    await holder.kill();

    assert.deepEqual(await reply, created(e, 'rescuer'));
    assert.ok(Date.now() < e.deadline, 'answered after the deadline');
    assert.deepEqual(handled, [e.id]);
    assert.equal(await counterValue(metrics.claimed), 1);
    const admin = await inspector(r);
    assert.equal(await pendingCount(admin), 0);
    assert.equal(await admin.xlen(STREAM), 0);
  });

  it('leaves a request with its live consumer however long past the claim idle time it works on it, and claims it once that consumer is killed', async function () {
    this.timeout(60_000);
    const r = await startRedis();
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const holder = await startConsumerProcess(r, 'holder');

    // Two slow requests; the second lives on into the killing half, so it gets two deadlines.
    const slow = envelope();
    const later = envelope({ deadline: Date.now() + 2 * DEFAULT_REQUEST_TIMEOUT_MS });
    const slowReply = dispatcher.submit(slow);
    const laterReply = dispatcher.submit(later);
    await holder.handed(slow.id);
    await holder.handed(later.id);
    const handled: string[] = [];
    const { metrics } = await startConsumer(r, (x) => {
      handled.push(x.id);
      return Promise.resolve(created(x, 'rescuer'));
    });

    // Without the holder's heartbeat both would be claimed after DEFAULT_CLAIM_IDLE_MS.
    await sleep(DEFAULT_CLAIM_IDLE_MS + 2 * DEFAULT_CLAIM_INTERVAL_MS);
    assert.deepEqual(handled, []);
    assert.equal(await counterValue(metrics.claimed), 0);
    holder.release(slow.id);
    assert.deepEqual(await slowReply, created(slow, 'holder'));
    // Handed to the holder once, never again (not even to itself).
    assert.deepEqual(holder.requests, [slow.id, later.id]);

    // The positive control, from the same setup: a dead holder's request is claimed.
    await holder.kill();
    assert.deepEqual(await laterReply, created(later, 'rescuer'));
    assert.deepEqual(handled, [later.id]);
    assert.equal(await counterValue(metrics.claimed), 1);
  });

  it('rejects with queue_full (503) once the broker redis reaches maxmemory, instead of hanging', async () => {
    const r = await startRedis({ maxMemoryBytes: 2 * 1024 * 1024 });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const admin = await inspector(r);
    const outcomes: (NonstopError | undefined)[] = [];
    const total = 40;
    const deadline = Date.now() + 15_000;
    // No consumer: nothing drains the queue. 40 x 128 KiB cannot fit in 2 MiB.
    for (let i = 0; i < total; i++) {
      dispatcher.submit(envelope({ deadline, body: 'x'.repeat(128 * 1024) })).then(
        () => outcomes.push(undefined),
        (err: NonstopError) => outcomes.push(err),
      );
    }
    // Every request either landed on the stream or was refused: none is silently lost.
    await waitFor('every request to land or be refused', async () => (await admin.xlen(STREAM)) + outcomes.length === total, 10_000, 50);
    assert.ok(Date.now() < deadline);
    assert.ok(outcomes.length > 0, 'no request was refused');
    for (const err of outcomes) {
      assert.equal(err?.code, 'queue_full');
      assert.equal(err.status, 503);
    }
    assert.ok((await admin.xlen(STREAM)) > 0);
  });

  it('recovers from a redis-server restart: group recreated, lane back, the in-flight request re-sent and answered', async () => {
    const r = await startRedis();
    const brokerLog = memoryLogger();
    const hold = gate();
    const calls = new Map<string, number>();
    const held = envelope({ body: 'hold' });
    await startConsumer(
      r,
      async (e) => {
        const n = (calls.get(e.id) ?? 0) + 1;
        calls.set(e.id, n);
        // The first delivery of the held request is still in the handler when redis dies.
        if (e.id === held.id && n === 1) await hold.wait();
        return created(e, `delivery-${n}`);
      },
      { log: brokerLog.log },
    );
    const { dispatcher, metrics } = startDispatcher(r);
    await addLane(dispatcher, r.port);

    const inflight = dispatcher.submit(held);
    await waitFor('the held request to reach the handler', () => calls.get(held.id) === 1, 5000, 20);
    await r.crash();

    // The lane noticed, re-sent the request to the new (empty) redis; the consumer
    // recreated its group and handles that second delivery.
    assert.deepEqual(await inflight, created(held, 'delivery-2'));
    assert.equal(calls.get(held.id), 2);
    assert.ok(brokerLog.lines.some((l) => l.message === 'consumer group missing; recreating'));
    assert.ok((await counterValue(metrics.redispatched)) >= 1);
    assert.equal(dispatcher.readyLanes, 1);

    const after = envelope();
    assert.deepEqual(await dispatcher.submit(after), created(after, 'delivery-1'));

    // The first delivery finishes late: its reply lands in the new redis, nobody fetches it
    // (the gateway already answered), and it expires with the reply TTL.
    hold.open();
    const admin = await inspector(r);
    const stale = queueKeys.reply(GW, held.id);
    await waitFor('the late reply of the first delivery', async () => (await admin.exists(stale)) === 1, 5000, 20);
    const ttl = await admin.pttl(stale);
    assert.ok(ttl > 0 && ttl <= 10_000, `stale reply ttl ${ttl}`);
    assert.equal(await admin.xlen(STREAM), 0);
    assert.equal(await pendingCount(admin), 0);
  });

  it('waits between attempts to recreate a vanished group while its writer is down, then recovers', async () => {
    const r = await startRedis();
    const mem = memoryLogger();
    const { consumer } = await startConsumer(r, (e) => Promise.resolve(created(e)), { log: mem.log });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    consumer.writer.disconnect();
    const admin = await inspector(r);
    await admin.xgroup('DESTROY', STREAM, queueKeys.group);
    const missing = (): number => mem.lines.filter((l) => l.message === 'consumer group missing; recreating').length;
    await waitFor('the consumer to notice the missing group', () => missing() > 0, 5000, 10);
    await sleep(500);
    // Paced by the read-failure pause (200 ms): a handful of attempts, not a busy loop.
    assert.ok(missing() < 20, `${missing()} attempts to recreate the group in 500 ms`);

    await consumer.writer.connect();
    const e = envelope();
    assert.deepEqual(await dispatcher.submit(e), created(e));
  });

  it('drops a lane the moment its tunnel closes and re-sends its in-flight request on another lane', async () => {
    const ra = await startRedis();
    const rb = await startRedis({ sameSecretsAs: ra });
    const stuck = gate();
    const reachedA: string[] = [];
    await startConsumer(ra, async (e) => {
      reachedA.push(e.id);
      await stuck.wait();
      return created(e, 'a');
    });
    await startConsumer(rb, (e) => Promise.resolve(created(e, 'b')));
    const { dispatcher, metrics } = startDispatcher(ra);

    const ta = await addLane(dispatcher, ra.port, 'tunnel-a');
    const e = envelope();
    const reply = dispatcher.submit(e);
    await waitFor('the request to reach broker a', () => reachedA.includes(e.id), 5000, 20);
    await addLane(dispatcher, rb.port, 'tunnel-b');
    assert.equal(dispatcher.openLanes, 2);

    ta.emit('closed');
    assert.equal(dispatcher.openLanes, 1);
    assert.equal(await counterValue(metrics.redispatched), 1);
    assert.deepEqual(await reply, created(e, 'b'));
    assert.equal(dispatcher.readyLanes, 1);
  });

  it('never logs the body or the token, on the consumer or the dispatcher side', async () => {
    const r = await startRedis();
    const brokerLog = memoryLogger();
    const gatewayLog = memoryLogger();
    const canary = `body-canary-${randomUUID()}`;
    const tokenCanary = `nst_${randomUUID().replace(/-/g, '').slice(0, 16)}_token-canary`;
    const bodies: string[] = [];
    const never = gate();
    await startConsumer(
      r,
      async (e) => {
        bodies.push(e.body ?? '');
        if (e.collection === 'slow') await never.wait();
        return { v: 1, id: e.id, status: 422, body: { error: { code: 'schema_violation', message: 'no' } } };
      },
      { log: brokerLog.log },
    );
    const { dispatcher } = startDispatcher(r, gatewayLog.log);
    const t = await addLane(dispatcher, r.port);

    const e = envelope({ body: JSON.stringify({ secret: canary }), token: tokenCanary });
    assert.equal((await dispatcher.submit(e)).status, 422);
    // The paths that do log: a deadline, a poison message carrying the secrets, a lane drop.
    const slow = envelope({ collection: 'slow', body: canary, token: tokenCanary, deadline: Date.now() + 300 });
    assert.equal((await rejection(dispatcher.submit(slow))).code, 'deadline_exceeded');
    const broker = await r.client('broker');
    await broker.xadd(STREAM, '*', queueKeys.field, JSON.stringify({ ...e, v: 7 }));
    await broker.xadd(STREAM, '*', queueKeys.field, JSON.stringify({ ...e, extra: canary }));
    const lost = envelope({ collection: 'slow', body: canary, token: tokenCanary, deadline: Date.now() + 1500 });
    const lostReply = rejection(dispatcher.submit(lost));
    await waitFor('the last slow request to reach the handler', () => bodies.length === 3, 5000, 20);
    t.emit('closed');
    assert.equal((await lostReply).code, 'deadline_exceeded');

    assert.equal(bodies[0], e.body);
    await waitFor('the poison messages to be logged', () => brokerLog.lines.filter((l) => l.message === 'poison message dead-lettered').length === 2);
    assert.ok(gatewayLog.lines.some((l) => l.message === 'tunnel dropped; requests re-sent'));
    for (const text of [brokerLog.text(), gatewayLog.text()]) {
      assert.ok(!text.includes(canary), 'a body reached the logs');
      assert.ok(!text.includes(tokenCanary), 'a token reached the logs');
    }
  });
});
