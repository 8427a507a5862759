import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS, DEFAULT_MAX_BUDGET_MS } from '../../../services/broker/config';
import { brokerMetrics, type BrokerMetrics } from '../../../services/broker/metrics';
import { QueueConsumer, type ConsumerOptions, type RequestHandler } from '../../../services/broker/queue/consumer';
import { NonstopError } from '../../../services/common/errors/nonstop-error';
import type { Logger } from '../../../services/common/log/logger';
import { encodeRequest, MAX_ENVELOPE_BYTES, type ReplyEnvelope, type RequestEnvelope } from '../../../services/common/queue/envelope';
import { PROTOCOL_VERSION, queueKeys } from '../../../services/common/queue/keys';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../../../services/common/queue/timing';
import { gatewayMetrics, type GatewayMetrics } from '../../../services/gateway/metrics';
import { Dispatcher, type QueueRequest } from '../../../services/gateway/queue/dispatcher';
import { QueuePasswords } from '../../../services/gateway/queue/passwords';
import { sameRequest } from '../../../services/gateway/queue/same-request';
import { StandInTunnel } from '../../support/stand-in-tunnel';
import { memoryLogger, silentLogger } from '../../support/logger';
import { freePort } from '../../support/ports';
import { TestRedis } from '../../support/redis-server';
import { waitFor } from '../../support/wait';
import { FreezableProxy } from '../../support/freezable-proxy';

const GW = 'gw-a';
const OTHER = 'gw-b';
const STREAM = queueKeys.requests(GW);


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

function envelope(over: Partial<QueueRequest> = {}): QueueRequest {
  return { id: randomUUID(), method: 'POST', collection: 'notes', token: 'nst_0123456789abcdef_token', body: '{"text":"hello"}', ...over };
}

/** What the broker's handler sees of a request: the request with the envelope's own fields. */
function asQueued(e: QueueRequest): Omit<RequestEnvelope, 'budgetMs'> {
  return { v: PROTOCOL_VERSION, gw: GW, ...e };
}

function created(e: { id: string }, by = 'broker'): ReplyEnvelope {
  return { v: PROTOCOL_VERSION, id: e.id, status: 201, body: { id: e.id, by } };
}

const T = DEFAULT_REQUEST_TIMEOUT_MS;

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
        maxBudgetMs: DEFAULT_MAX_BUDGET_MS,
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
      maxBudgetMs: DEFAULT_MAX_BUDGET_MS,
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
    const dispatcher = new Dispatcher(GW, { username: g.username, passwords: QueuePasswords.fixed(g.password, log) }, { commandTimeoutMs: 2000, pingIntervalMs: 500, pingMisses: 2 }, sameRequest, metrics, log);
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
    assert.deepEqual(await dispatcher.submit(post, T), created(post));
    assert.deepEqual(await dispatcher.submit(get, T), created(get));

    assert.deepEqual(seen.map(({ budgetMs: _, ...rest }) => rest), [asQueued(post), asQueued(get)]);
    for (const e of seen) assert.ok(e.budgetMs > T - 2000 && e.budgetMs <= T, `budget ${e.budgetMs}`);
    const admin = await inspector(r);
    // Replies travel published, never stored: the broker's Redis holds nothing afterwards.
    assert.equal(await admin.dbsize(), 1, 'only the request stream (empty) remains');
    assert.equal(await admin.xlen(STREAM), 0);
    assert.equal(await pendingCount(admin), 0);
  });

  it('refuses a request with no_tunnel (503) when no lane is ready', async () => {
    const { dispatcher } = startDispatcher(await startRedis());
    const none = await rejection(dispatcher.submit(envelope(), T));
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
    const err = await rejection(d2.submit(envelope(), T));
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
    assert.deepEqual(await dispatcher.submit(e, T), created(e));
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
    const e = envelope();
    const started = Date.now();
    const err = await rejection(dispatcher.submit(e, 400));
    assert.ok(Date.now() - started >= 400, 'rejected before the deadline');
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
    const queued = (over: Partial<RequestEnvelope> = {}): RequestEnvelope => ({ ...asQueued(envelope()), budgetMs: T, ...over });
    await put('unknown_version', queueKeys.field, JSON.stringify({ ...queued(), v: 1, body: canary }));
    await put('oversize', queueKeys.field, JSON.stringify({ ...queued(), body: canary + 'x'.repeat(MAX_ENVELOPE_BYTES) }));
    await put('bad_shape', 'x', encodeRequest(queued({ body: canary })));
    await put('bad_shape', queueKeys.field, encodeRequest(queued({ gw: OTHER, body: canary })));
    await put('bad_shape', queueKeys.field, JSON.stringify({ ...queued(), [canary]: canary }));

    const valid = envelope();
    assert.deepEqual(await dispatcher.submit(valid, T), created(valid));
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
    const replies = await Promise.all(envelopes.map((e) => dispatcher.submit(e, T)));
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
    const started = Date.now();
    const reply = dispatcher.submit(e, T);
    await holder.handed(e.id);
    // Started only now, so that the request went to the holder.
    const handled: string[] = [];
    const { metrics } = await startConsumer(r, (x) => {
      handled.push(x.id);
      return Promise.resolve(created(x, 'rescuer'));
    });
    await holder.kill();

    assert.deepEqual(await reply, created(e, 'rescuer'));
    assert.ok(Date.now() - started < T, 'answered after the deadline');
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
    const later = envelope();
    const slowReply = dispatcher.submit(slow, T);
    const laterReply = dispatcher.submit(later, 2 * T);
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
    // The holder replies first and acknowledges after; kill it only once it has, or its
    // unacknowledged entry is (rightly) claimed and answered again.
    const admin = await inspector(r);
    await waitFor('the holder to acknowledge the slow request', async () => (await pendingCount(admin)) === 1, 5000, 20);
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
      dispatcher.submit(envelope({ body: 'x'.repeat(128 * 1024) }), deadline - Date.now()).then(
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

  it('refuses with body_too_large (413) at once a largest body that escapes past the envelope limit, queueing nothing, and keeps serving', async () => {
    const r = await startRedis();
    const seen: string[] = [];
    await startConsumer(r, (e) => {
      seen.push(e.id);
      return Promise.resolve(created(e));
    });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    // MAX_BODY_BYTES at its largest, all escaped backslashes: twice that once in the envelope.
    const max = MAX_ENVELOPE_BYTES / 2;
    const big = envelope({ body: `"${'\\\\'.repeat((max - 2) / 2)}"` });
    const started = Date.now();
    const err = await rejection(dispatcher.submit(big, T));
    assert.equal(err.code, 'body_too_large');
    assert.equal(err.status, 413);
    assert.ok(Date.now() - started < T / 2, 'refused at once, not at the deadline');
    // Positive control on the same lane: a body of the same size that needs no escaping is carried.
    const plain = envelope({ body: `"${'a'.repeat(max - 2)}"` });
    assert.deepEqual(await dispatcher.submit(plain, T), created(plain));
    assert.deepEqual(seen, [plain.id], 'the refused request never reached the broker');
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

    const inflight = dispatcher.submit(held, T);
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
    assert.deepEqual(await dispatcher.submit(after, T), created(after, 'delivery-1'));

    // The first delivery finishes late: its reply is published to nobody who waits (the
    // gateway already answered) and leaves nothing behind in the new redis.
    hold.open();
    await waitFor('the first delivery to finish', () => brokerLog.lines.length >= 0 && calls.get(held.id) === 2, 5000, 20);
    const admin = await inspector(r);
    await sleep(200);
    assert.deepEqual(await admin.keys('*'), [STREAM]);
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
    assert.deepEqual(await dispatcher.submit(e, T), created(e));
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
    const reply = dispatcher.submit(e, T);
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
        return { v: PROTOCOL_VERSION, id: e.id, status: 422, body: { error: { code: 'schema_violation', message: 'no' } } };
      },
      { log: brokerLog.log },
    );
    const { dispatcher } = startDispatcher(r, gatewayLog.log);
    const t = await addLane(dispatcher, r.port);

    const e = envelope({ body: JSON.stringify({ secret: canary }), token: tokenCanary });
    assert.equal((await dispatcher.submit(e, T)).status, 422);
    // The paths that do log: a deadline, a poison message carrying the secrets, a lane drop.
    const slow = envelope({ collection: 'slow', body: canary, token: tokenCanary });
    assert.equal((await rejection(dispatcher.submit(slow, 300))).code, 'deadline_exceeded');
    const broker = await r.client('broker');
    await broker.xadd(STREAM, '*', queueKeys.field, JSON.stringify({ ...e, v: 7 }));
    await broker.xadd(STREAM, '*', queueKeys.field, JSON.stringify({ ...e, extra: canary }));
    const lost = envelope({ collection: 'slow', body: canary, token: tokenCanary });
    const lostReply = rejection(dispatcher.submit(lost, 1500));
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

  it('drains a queue filled to maxmemory as soon as the handler answers again, and serves a fresh request within 5 s, nobody restarting anything', async function () {
    this.timeout(40_000);
    const r = await startRedis({ maxMemoryBytes: 2 * 1024 * 1024 });
    const paused = gate();
    const handled: string[] = [];
    const { consumer } = await startConsumer(
      r,
      async (e) => {
        await paused.wait();
        handled.push(e.id);
        return created(e);
      },
      { concurrency: 2 },
    );
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const admin = await inspector(r);

    // Core "paused": the handler holds two, the rest queue up until Redis refuses (OOM).
    // Small entries, so that the last one accepted leaves Redis above maxmemory, where it
    // refuses anything queued in a MULTI (large ones are refused by their own query buffer
    // and leave it just below).
    const outcomes: Promise<string>[] = [];
    let full = false;
    for (let batch = 0; batch < 100 && !full; batch++) {
      const ps = Array.from({ length: 25 }, () =>
        dispatcher.submit(envelope({ body: JSON.stringify({ text: 'x'.repeat(4096) }) }), 30_000).then(
          () => 'ok' as const,
          (err: NonstopError) => err.code,
        ),
      );
      outcomes.push(...ps);
      full = (await Promise.race([Promise.any(ps.map((p) => p.then((x) => (x === 'queue_full' ? x : Promise.reject(new Error(x)))))), sleep(50).then(() => 'queued')])) === 'queue_full';
    }
    assert.ok(full, 'the queue never filled');
    // Requests keep arriving while it is full: one large XADD half-received, as clients
    // retrying big bodies keep it. Redis sizes the query buffer for the whole announced
    // bulk, which keeps it above maxmemory, where anything queued in a MULTI is refused.
    const g = r.gateway(GW);
    const halfSent = createConnection({ host: '127.0.0.1', port: r.port });
    cleanups.push(() => halfSent.destroy());
    halfSent.on('error', () => undefined);
    const big = 1024 * 1024;
    halfSent.write(`*3\r\n$4\r\nAUTH\r\n$${g.username.length}\r\n${g.username}\r\n$${g.password.length}\r\n${g.password}\r\n`);
    halfSent.write(`*5\r\n$4\r\nXADD\r\n$${STREAM.length}\r\n${STREAM}\r\n$1\r\n*\r\n$1\r\ne\r\n$${big}\r\n${'y'.repeat(big / 2)}`);
    await waitFor('the half-sent request to hold memory', async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]) > 2 * 1024 * 1024, 5000, 20);
    const memory = await admin.info('memory');
    const used = Number(/used_memory:(\d+)/.exec(memory)![1]);
    const max = Number(/maxmemory:(\d+)/.exec(memory)![1]);
    assert.ok(used > max, `used_memory ${used} is not above maxmemory ${max}: the test did not reach the wedge condition`);

    // "Core" is back: everything queued is answered and acknowledged at that memory level,
    // and a fresh request (retried on queue_full, as a client does) goes through within 5 s.
    paused.open();
    const started = Date.now();
    let fresh: ReplyEnvelope | undefined;
    while (!fresh && Date.now() - started < 5000) {
      const e = envelope();
      fresh = await dispatcher.submit(e, 5000).catch(async (err: NonstopError) => {
        assert.equal(err.code, 'queue_full');
        await sleep(100);
        return undefined;
      });
    }
    assert.ok(fresh, 'no fresh request got through within 5 s of the handler answering again');
    assert.equal(fresh.status, 201);
    const results = await Promise.all(outcomes);
    // Each was either refused (not stored) or answered: none lost, none left hanging.
    assert.ok(results.every((x) => x === 'ok' || x === 'queue_full'), JSON.stringify([...new Set(results)]));
    assert.ok(results.filter((x) => x === 'ok').length > 100);
    await waitFor('the stream to drain', async () => (await admin.xlen(STREAM)) === 0 && (await pendingCount(admin)) === 0, 5000, 20);
    assert.ok(consumer.stalledMs < 2000);
  });

  it('trims entries older than the largest budget while every worker is busy, and drops an expired one unanswered', async function () {
    this.timeout(30_000);
    const r = await startRedis();
    const held = gate();
    const seen: string[] = [];
    const { metrics } = await startConsumer(
      r,
      async (e) => {
        seen.push(e.id);
        await held.wait();
        return created(e);
      },
      { concurrency: 1, maxBudgetMs: 1000, claimIntervalMs: 200 },
    );
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const admin = await inspector(r);
    const first = envelope();
    const firstReply = rejection(dispatcher.submit(first, 800));
    await waitFor('the first request at the handler', () => seen.length === 1, 5000, 20);
    const queued = [envelope(), envelope(), envelope()];
    const replies = queued.map((e) => rejection(dispatcher.submit(e, 800)));
    await waitFor('the waiting entries to be queued', async () => (await admin.xlen(STREAM)) === 4, 5000, 20);
    // The only worker is busy: only the trim can remove the three that wait.
    await waitFor('expired entries to be trimmed', async () => (await admin.xlen(STREAM)) === 0, 5000, 50);
    assert.ok((await counterValue(metrics.processed, { outcome: 'expired' })) >= 3);
    for (const err of await Promise.all([firstReply, ...replies])) assert.equal(err.code, 'deadline_exceeded');
    held.open();
    assert.deepEqual(seen, [first.id], 'a request past its budget reached the handler');
    // Positive control: a request with budget to spare is still served.
    const ok = envelope();
    assert.deepEqual(await dispatcher.submit(ok, T), created(ok));
  });

  for (const offsetMs of [60_000, -60_000]) {
    it(`serves normally with the broker process's wall clock ${offsetMs > 0 ? 'ahead' : 'behind'} by 60 s, handing the handler the budget the gateway sent`, async () => {
      const r = await startRedis();
      const budgets: number[] = [];
      const realNow = Date.now.bind(Date);
      await startConsumer(r, (e, deadline) => {
        budgets.push(deadline - performance.now());
        return Promise.resolve(created(e));
      });
      const { dispatcher } = startDispatcher(r);
      await addLane(dispatcher, r.port);
      // The consumer and the dispatcher live in this process: skew its wall clock. Redis's
      // (the broker host's) is not skewed; budgets never read the process's wall clock.
      Date.now = () => realNow() + offsetMs;
      cleanups.push(() => (Date.now = realNow));
      for (let i = 0; i < 5; i++) {
        const e = envelope();
        assert.deepEqual(await dispatcher.submit(e, 2000), created(e));
      }
      Date.now = realNow;
      assert.equal(budgets.length, 5);
      for (const b of budgets) assert.ok(b > 1000 && b <= 2000, `budget at the handler ${b}`);
    });
  }

  it("moves a request off a lane whose tunnel went silent (a partition, nothing closed) to another broker's lane, well inside the deadline", async () => {
    const ra = await startRedis();
    const rb = await startRedis({ sameSecretsAs: ra });
    const reachedA: string[] = [];
    await startConsumer(ra, (e) => {
      reachedA.push(e.id);
      return Promise.resolve(created(e, 'a'));
    });
    await startConsumer(rb, (e) => Promise.resolve(created(e, 'b')));
    const proxy = await FreezableProxy.start(ra.port);
    cleanups.push(() => proxy.stop());
    const { dispatcher, metrics } = startDispatcher(ra);
    await addLane(dispatcher, proxy.port, 'tunnel-a');
    // Positive control: lane a carries requests while the link is up.
    const before = envelope();
    assert.deepEqual(await dispatcher.submit(before, T), created(before, 'a'));
    await addLane(dispatcher, rb.port, 'tunnel-b');

    proxy.freeze();
    // Both lanes are equally idle; the request goes to whichever is picked first, and must
    // come back from b either way (directly, or re-sent once a's pings go unanswered).
    const results: ReplyEnvelope[] = [];
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      const e = envelope();
      results.push(await dispatcher.submit(e, T));
    }
    const took = Date.now() - started;
    for (const res of results) assert.equal((res.body as { by: string }).by, 'b');
    assert.ok(took < T / 2, `took ${took} ms`);
    await waitFor('lane a to be given up', () => dispatcher.readyLanes === 1, 5000, 20);
    assert.ok((await counterValue(metrics.redispatched)) >= 1, 'nothing was re-sent: the test did not exercise the silent lane');
    assert.deepEqual(reachedA, [before.id]);
  });

  it('joins a retry under the same id while the first is in flight (even re-serialised), and refuses a different record under it', async () => {
    const r = await startRedis();
    const held = gate();
    const calls: string[] = [];
    await startConsumer(r, async (e) => {
      calls.push(e.id);
      await held.wait();
      return created(e);
    });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const first = envelope({ key: 'k-1', body: '{"a":1,"b":{"c":2,"d":3}}' });
    const p1 = dispatcher.submit(first, T);
    await waitFor('the first attempt at the handler', () => calls.length === 1, 5000, 20);
    const p2 = dispatcher.submit({ ...first, body: '{ "b": {"d":3,"c":2}, "a": 1 }' }, T);
    const other = await rejection(dispatcher.submit({ ...first, body: '{"a":2}' }, T));
    assert.equal(other.code, 'conflict');
    assert.equal(other.status, 409);
    held.open();
    assert.deepEqual(await p1, created(first));
    assert.deepEqual(await p2, created(first));
    assert.deepEqual(calls, [first.id], 'the retry was queued a second time');
  });

  it('refuses new requests while draining (not stored) but still delivers the replies of those in flight; closing ends the rest as maybe stored', async () => {
    const r = await startRedis();
    const held = gate();
    const never = gate();
    const seen: string[] = [];
    await startConsumer(r, async (e) => {
      seen.push(e.id);
      if (e.collection === 'slow') await never.wait();
      await held.wait();
      return created(e);
    });
    const { dispatcher } = startDispatcher(r);
    await addLane(dispatcher, r.port);
    const inflight = envelope();
    const reply = dispatcher.submit(inflight, T);
    await waitFor('the request at the handler', () => seen.length === 1, 5000, 20);
    dispatcher.drain();
    const refused = await rejection(dispatcher.submit(envelope(), T));
    assert.equal(refused.code, 'shutting_down');
    held.open();
    assert.deepEqual(await reply, created(inflight));

    const { dispatcher: d2 } = startDispatcher(r);
    await addLane(d2, r.port);
    const stuck = envelope({ collection: 'slow' });
    const stuckReply = rejection(d2.submit(stuck, T));
    await waitFor('the slow request at the handler', () => seen.includes(stuck.id), 5000, 20);
    d2.close();
    const err = await stuckReply;
    assert.equal(err.code, 'deadline_exceeded');
  });

  it("reports a consumer whose Redis stopped answering as not moving, and one that idles as moving", async () => {
    const r = await startRedis();
    const { consumer } = await startConsumer(r, (e) => Promise.resolve(created(e)));
    await sleep(2500);
    assert.ok(consumer.stalledMs < 1500, `idle consumer stalled for ${consumer.stalledMs} ms`);
    await r.stopServer();
    await sleep(2500);
    assert.ok(consumer.stalledMs >= 2000, `consumer without redis stalled only ${consumer.stalledMs} ms`);
  });
});
