import { Redis, type RedisOptions } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log/logger';
import { decodeRequest, encodeReply, PoisonMessageError, type ReplyEnvelope, type RequestEnvelope } from '../../common/queue/envelope';
import { entryTimeMs, queueKeys } from '../../common/queue/keys';
import { redisErrorCode } from '../../common/queue/redis-errors';
import type { BrokerMetrics } from '../metrics';
import { MAX_ENTRIES_PER_READ } from '../redis/config';

export interface ConsumerOptions {
  redis: RedisOptions;
  /** Served at start; setGateways() changes them while it runs. */
  gatewayIds: string[];
  consumerName: string;
  concurrency: number;
  /** Budgets are clipped to this; entries older than it are trimmed (nobody waits for them). */
  maxBudgetMs: number;
  claimIdleMs: number;
  claimIntervalMs: number;
}

/**
 * Decides the reply to a decoded request (validation, core) by `deadline`, a
 * performance.now() time; never throws.
 */
export type RequestHandler = (envelope: RequestEnvelope, deadline: number) => Promise<ReplyEnvelope>;

type StreamEntry = [id: string, fields: string[] | null];

/** Redis's clock (the broker host's) read at one performance.now() instant. */
interface ClockPair {
  redisMs: number;
  at: number;
}

/**
 * Takes requests off every gateway's stream with a consumer group, at most `concurrency`
 * at once, and publishes each reply on its gateway's channel before acknowledging (and
 * deleting) the request. Nothing runs inside MULTI and nothing the consumer sends needs
 * memory (PUBLISH, XACK, XDEL, XTRIM are not refused at maxmemory, unlike anything queued
 * in a MULTI), so a Redis filled to its limit drains as soon as core answers again.
 *
 * Time: a request carries the budget it had when the gateway enqueued it. What it spent
 * waiting here is the entry id's time against Redis's TIME (both this host's clock, never
 * compared with another host's); the rest is measured on the monotonic clock. Requests
 * whose budget is gone are dropped unanswered (their gateway has said 504) and entries
 * older than `maxBudgetMs` are trimmed, even while every worker is busy.
 *
 * A request held by a consumer that went silent for
 * `claimIdleMs` is claimed by another (XAUTOCLAIM), looked for every `claimIntervalMs`.
 * A live consumer keeps the entries it is working on fresh (XCLAIM to itself, JUSTID,
 * every third of `claimIdleMs`), so only a dead or cut-off consumer's requests are
 * claimed, never a slow one's — which is what lets `claimIdleMs` be short enough for
 * failover to beat the request deadline. Poison messages — not JSON, unknown
 * protocol version, wrong shape, oversize, or claiming another gateway's identity — go to
 * the dead-letter stream with the reason (never the payload) and are acknowledged; they
 * never stop the loop.
 *
 * The gateways served can change while it runs (setGateways). A gateway no longer served
 * is not read any more; what it had queued here is left for it to re-send through another
 * broker (its lane here is cut), and what is being processed for it finishes.
 */
export class QueueConsumer {
  private readonly reader: Redis;
  readonly writer: Redis;
  private running = false;
  private inflight = 0;
  private slotFreed: (() => void) | undefined;
  private claimTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private trimTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last Redis round trip that moved the queue forward. */
  private lastProgress = performance.now();
  private loopDone: Promise<void> | undefined;
  /** The streams read now; replaced whole, never changed in place, so a loop over the old one finishes on it. */
  private streams: readonly string[];
  /** Every stream with entries in progress or read now, and its gateway. */
  private readonly gatewayOfStream = new Map<string, string>();
  /** Entries this consumer is processing right now, by stream. */
  private readonly inProgress = new Map<string, Set<string>>();

  constructor(
    private readonly opts: ConsumerOptions,
    private readonly handle: RequestHandler,
    private readonly metrics: BrokerMetrics,
    private readonly log: Logger,
  ) {
    const base: RedisOptions = {
      ...opts.redis,
      enableReadyCheck: false,
      disableClientInfo: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (n) => Math.min(50 * 2 ** n, 1000),
      lazyConnect: true,
    };
    this.reader = new Redis(base);
    this.writer = new Redis({ ...base, commandTimeout: 5000 });
    for (const c of [this.reader, this.writer]) {
      c.on('error', (err: Error) => log.debug('redis connection error', { err: err.message }));
      // Redis disconnects the clients holding the most memory once all clients together
      // reach maxmemory-clients (redis/config.ts). A batch of envelopes read here is
      // legitimately large: a gateway that queued large ones must not get these
      // connections cut, again and again, by the limit that exists to cut its own. (Their
      // buffers still count toward the limit, which is why a read takes at most
      // MAX_ENTRIES_PER_READ entries.)
      c.on('ready', () => {
        c.call('CLIENT', 'NO-EVICT', 'ON').catch((err: Error) => log.warn('redis refused CLIENT NO-EVICT', { err: err.message }));
      });
    }
    this.streams = [];
    this.serve(opts.gatewayIds);
  }

  private serve(gatewayIds: readonly string[]): void {
    const streams = gatewayIds.map((id) => queueKeys.requests(id));
    gatewayIds.forEach((id, i) => {
      this.gatewayOfStream.set(streams[i]!, id);
      if (!this.inProgress.has(streams[i]!)) this.inProgress.set(streams[i]!, new Set());
    });
    this.streams = streams;
    for (const stream of this.inProgress.keys()) this.forgetIfDone(stream);
  }

  /** Drops the bookkeeping of a stream no longer read once nothing of it is in progress. */
  private forgetIfDone(stream: string): void {
    if (this.streams.includes(stream) || (this.inProgress.get(stream)?.size ?? 0) > 0) return;
    this.inProgress.delete(stream);
    this.gatewayOfStream.delete(stream);
  }

  /**
   * Serves exactly these gateways from the next read on: the consumer group of a new one is
   * created first (throws, changing nothing, if Redis refuses); a removed one's queued
   * entries are trimmed, since nobody here will read them and its gateway re-sends them
   * elsewhere once its lane here is cut. Its requests in progress finish.
   */
  async setGateways(gatewayIds: readonly string[]): Promise<void> {
    const streams = new Set(gatewayIds.map((id) => queueKeys.requests(id)));
    await this.ensureGroups([...streams].filter((s) => !this.streams.includes(s)));
    const dropped = this.streams.filter((s) => !streams.has(s));
    this.serve(gatewayIds);
    for (const stream of dropped) {
      await this.writer.xtrim(stream, 'MAXLEN', 0).catch((err: Error) => this.log.debug('trim of a removed gateway failed', { stream, err: err.message }));
    }
  }

  async start(): Promise<void> {
    await Promise.all([this.reader.connect(), this.writer.connect()]);
    await this.ensureGroups(this.streams);
    this.running = true;
    this.loopDone = this.readLoop();
    this.claimTimer = setInterval(() => void this.claim(), this.opts.claimIntervalMs);
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.floor(this.opts.claimIdleMs / 3));
    this.trimTimer = setInterval(() => void this.trimExpired(), this.opts.claimIntervalMs);
  }

  private async ensureGroups(streams: readonly string[]): Promise<void> {
    for (const stream of streams) {
      try {
        await this.writer.xgroup('CREATE', stream, queueKeys.group, '0', 'MKSTREAM');
      } catch (err) {
        if (redisErrorCode(err) !== 'BUSYGROUP') throw err;
      }
    }
  }

  get busy(): number {
    return this.inflight;
  }

  /**
   * How long the queue has not moved: no read answered and no request acknowledged. A
   * working consumer reads at least every second (its blocking read times out) or, when
   * every worker is busy, finishes one within a budget; health reports more as stuck.
   */
  get stalledMs(): number {
    return performance.now() - this.lastProgress;
  }

  /** Redis's clock now, or this process's if Redis does not answer (the same host's clock). */
  private async clock(): Promise<ClockPair> {
    try {
      const [sec, usec] = await this.writer.time();
      return { redisMs: Number(sec) * 1000 + Math.floor(Number(usec) / 1000), at: performance.now() };
    } catch {
      return { redisMs: Date.now(), at: performance.now() };
    }
  }

  private async waitForSlot(): Promise<void> {
    while (this.running && this.inflight >= this.opts.concurrency) {
      await new Promise<void>((resolve) => (this.slotFreed = resolve));
    }
  }

  private async readLoop(): Promise<void> {
    while (this.running) {
      await this.waitForSlot();
      if (!this.running) break;
      const streams = this.streams;
      try {
        const free = Math.min(this.opts.concurrency - this.inflight, MAX_ENTRIES_PER_READ);
        const res = (await this.reader.xreadgroup(
          'GROUP', queueKeys.group, this.opts.consumerName,
          'COUNT', free, 'BLOCK', 1000,
          'STREAMS', ...streams, ...streams.map(() => '>'),
        )) as [string, StreamEntry[]][] | null;
        this.lastProgress = performance.now();
        if (!res) continue;
        const clock = await this.clock();
        for (const [stream, entries] of res) {
          // Read just as its gateway was removed: left unacknowledged for the trim; the
          // gateway re-sends them through another broker.
          if (!this.streams.includes(stream)) continue;
          for (const entry of entries) this.dispatch(stream, entry, clock);
        }
      } catch (err) {
        if (!this.running) break;
        const message = (err as Error).message;
        if (redisErrorCode(err) === 'NOGROUP') {
          // redis-server restarted empty: the groups (and anything queued) are gone.
          this.log.warn('consumer group missing; recreating', {});
          // If the writer is not back yet, pause like any other failed read instead of
          // spinning (and logging) in a tight loop until it is.
          await this.ensureGroups(this.streams).catch(() => sleep(200));
        } else {
          this.log.debug('read failed', { err: message });
          await sleep(200);
        }
      }
    }
  }

  private dispatch(stream: string, [id, fields]: StreamEntry, clock: ClockPair): void {
    const mine = this.inProgress.get(stream)!;
    mine.add(id);
    this.inflight++;
    this.metrics.inflight.set(this.inflight);
    this.process(stream, id, fields, clock)
      .catch((err: Error) => this.log.error('processing failed', { entry: id, err: err.message }))
      .finally(() => {
        mine.delete(id);
        this.forgetIfDone(stream);
        this.inflight--;
        this.metrics.inflight.set(this.inflight);
        this.slotFreed?.();
      });
  }

  private async process(stream: string, entryId: string, fields: string[] | null, clock: ClockPair): Promise<void> {
    const gatewayId = this.gatewayOfStream.get(stream)!;
    let envelope: RequestEnvelope;
    try {
      const text = fieldValue(fields, queueKeys.field);
      if (text === undefined) throw new PoisonMessageError('bad_shape', 'entry has no envelope field');
      envelope = decodeRequest(text);
      if (envelope.gw !== gatewayId) throw new PoisonMessageError('bad_shape', 'envelope names another gateway');
    } catch (err) {
      if (!(err instanceof PoisonMessageError)) throw err;
      this.metrics.poison.inc({ reason: err.reason });
      this.log.warn('poison message dead-lettered', { gateway: gatewayId, entry: entryId, reason: err.reason, detail: err.message });
      // The dead-letter record needs memory and may be refused by a full Redis; the entry is
      // acknowledged regardless, so one poison message never blocks the stream.
      await this.writer
        .xadd(queueKeys.deadLetter, 'MAXLEN', '~', '10000', '*', 'reason', err.reason, 'detail', err.message, 'gateway', gatewayId, 'entry', entryId, 'at', String(Date.now()))
        .catch((e: Error) => this.log.warn('dead-letter record refused', { entry: entryId, err: e.message }));
      await this.settle(stream, entryId);
      return;
    }
    const waited = Math.max(0, clock.redisMs - entryTimeMs(entryId));
    const deadline = clock.at + Math.min(envelope.budgetMs, this.opts.maxBudgetMs) - waited;
    if (performance.now() >= deadline) {
      // Nobody waits for this answer any more (the gateway said 504); doing it anyway would
      // only spend core's time. Dropping is safe: the client was never told it succeeded.
      this.metrics.processed.inc({ outcome: 'expired' });
      await this.settle(stream, entryId);
      return;
    }
    const reply = await this.handle(envelope, deadline);
    await this.settle(stream, entryId, { gatewayId, envelope: reply });
  }

  /**
   * Acknowledges and deletes an entry, after publishing its reply when there is one, all in
   * one pipeline (one write, one round trip; publish-then-settle took two). Redis runs a
   * connection's commands in the order sent, so an entry is never acknowledged before its
   * reply was published: a consumer that dies part way leaves the request to be claimed and
   * answered again (same id, same effect at core), never unanswered. Not MULTI, so it works
   * at any memory level (none of the three is refused at maxmemory).
   */
  private async settle(stream: string, entryId: string, reply?: { gatewayId: string; envelope: ReplyEnvelope }): Promise<void> {
    const pipeline = this.writer.pipeline();
    if (reply) pipeline.publish(queueKeys.replies(reply.gatewayId), encodeReply(reply.envelope));
    const res = await pipeline.xack(stream, queueKeys.group, entryId).xdel(stream, entryId).exec();
    const failed = res?.find(([err]) => err !== null)?.[0];
    if (failed) throw failed;
    this.lastProgress = performance.now();
  }

  /** Drops entries no budget can still cover, also while every worker is busy. */
  private async trimExpired(): Promise<void> {
    if (!this.running) return;
    const clock = await this.clock();
    const minId = Math.max(0, clock.redisMs - this.opts.maxBudgetMs);
    for (const stream of this.streams) {
      try {
        const trimmed = await this.writer.xtrim(stream, 'MINID', minId);
        if (trimmed > 0) {
          this.metrics.processed.inc({ outcome: 'expired' }, trimmed);
          this.log.warn('expired requests trimmed from the queue', { stream, requests: trimmed });
        }
      } catch (err) {
        this.log.debug('trim failed', { err: (err as Error).message });
      }
    }
  }

  /**
   * Claims requests whose consumer has been silent for claimIdleMs, MAX_ENTRIES_PER_READ
   * at a time, walking each stream's pending entries until they are all looked at or no
   * worker is free.
   */
  private async claim(): Promise<void> {
    if (!this.running) return;
    for (const stream of this.streams) {
      let cursor = '0-0';
      do {
        const free = Math.min(this.opts.concurrency - this.inflight, MAX_ENTRIES_PER_READ);
        if (free <= 0) return;
        try {
          const [next, entries] = (await this.writer.xautoclaim(stream, queueKeys.group, this.opts.consumerName, this.opts.claimIdleMs, cursor, 'COUNT', free)) as [string, StreamEntry[], string[]];
          cursor = next;
          if (entries.length === 0) continue;
          const clock = await this.clock();
          if (!this.streams.includes(stream)) break;
          for (const entry of entries) {
            // XAUTOCLAIM also hands back our own entries if a heartbeat was late (a stalled
            // event loop, a slow Redis); they are still being processed here, not abandoned.
            if (this.inProgress.get(stream)!.has(entry[0])) continue;
            this.metrics.claimed.inc();
            this.log.warn('claimed a request from a silent consumer', { entry: entry[0] });
            this.dispatch(stream, entry, clock);
          }
        } catch (err) {
          this.log.debug('claim failed', { err: (err as Error).message });
          break;
        }
      } while (cursor !== '0-0' && this.running);
    }
  }

  /**
   * Resets the idle time of every entry this consumer is processing (XCLAIM to itself with
   * min-idle 0; JUSTID leaves the delivery count alone), so that no other consumer's
   * XAUTOCLAIM takes them while this one is alive. Should another consumer have claimed one
   * already (this one was cut off for claimIdleMs), both are processing it by then and
   * taking it back changes nothing: either one's XACK settles it.
   */
  private async heartbeat(): Promise<void> {
    for (const [stream, ids] of this.inProgress) {
      if (ids.size === 0) continue;
      try {
        await this.writer.xclaim(stream, queueKeys.group, this.opts.consumerName, 0, ...ids, 'JUSTID');
      } catch (err) {
        this.log.debug('heartbeat failed', { err: (err as Error).message });
      }
    }
  }

  /** Stops reading, waits for requests in progress to finish, closes connections. */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.claimTimer);
    clearInterval(this.trimTimer);
    this.slotFreed?.();
    this.reader.disconnect();
    await this.loopDone;
    // The heartbeat goes on until the last handler is done: a slow request finishing during
    // shutdown is still this consumer's, not another's to claim.
    while (this.inflight > 0) await new Promise<void>((resolve) => (this.slotFreed = resolve));
    clearInterval(this.heartbeatTimer);
    this.writer.disconnect();
  }
}

function fieldValue(fields: string[] | null, name: string): string | undefined {
  if (!fields) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
