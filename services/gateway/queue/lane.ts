import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import { ApiError } from '../../common/errors/api-error';
import type { Logger } from '../../common/log/logger';
import { decodeReply, encodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../../common/queue/envelope';
import { queueKeys } from '../../common/queue/keys';
import { redisErrorCode } from '../../common/queue/redis-errors';
import type { Tunnel } from '../tunnel/tunnel';

export interface QueueCredentials {
  username: string;
  password: string;
}

export interface LaneOptions {
  commandTimeoutMs: number;
  /** How often the lane checks that the broker's Redis answers through the tunnel. */
  pingIntervalMs: number;
  /** Unanswered checks in a row after which the lane is not ready (its requests move). */
  pingMisses: number;
}

/**
 * The gateway's end of queue protocol v2 on one broker's tunnel. It owns the protocol:
 * `send` encodes a request and appends it to this gateway's stream; replies arrive
 * published on this gateway's channel, are decoded here and handed out as finished
 * replies ('reply'). Two Redis connections through the tunnel: one for commands, one
 * subscribed. Fail-fast: no offline queue, no retries of in-flight commands (a retried XADD
 * could enqueue twice), commands time out.
 *
 * Ready means both connections answer. A tunnel that is cut without closing (a partition,
 * a blackhole) leaves TCP looking healthy for as long as SSH keepalives take to notice, so
 * the lane also pings every `pingIntervalMs` and stops being ready after `pingMisses`
 * unanswered pings — fast enough for its requests to move to another broker well inside
 * their deadline. The broker's ACL lets this user do nothing else.
 */
export class Lane extends EventEmitter<{ ready: []; unready: []; reply: [reply: ReplyEnvelope] }> {
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly channel: string;
  private readonly stream: string;
  private cmdUp = false;
  private subUp = false;
  private pingsMissed = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  ready = false;
  /** Requests sent on this lane that have no reply yet. */
  readonly inflight = new Set<string>();

  constructor(
    readonly tunnel: Tunnel,
    gatewayId: string,
    creds: QueueCredentials,
    private readonly opts: LaneOptions,
    private readonly log: Logger,
  ) {
    super();
    const redisOpts: RedisOptions = {
      host: '127.0.0.1',
      port: tunnel.localPort,
      username: creds.username,
      password: creds.password,
      enableReadyCheck: false,
      disableClientInfo: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableAutoPipelining: true,
      connectTimeout: 5000,
      commandTimeout: opts.commandTimeoutMs,
      retryStrategy: (n) => Math.min(50 * 2 ** n, 2000),
      lazyConnect: true,
    };
    this.cmd = new Redis(redisOpts);
    // No autoResubscribe: ioredis re-subscribes on reconnect without a rejection handler,
    // and with maxRetriesPerRequest 0 a connection that drops again at once (the tunnel is
    // up but the broker's redis-server is not) rejects it — an unhandled rejection that
    // would take the whole gateway down. We subscribe on every connect ourselves.
    this.sub = new Redis({ ...redisOpts, commandTimeout: undefined, autoResubscribe: false });
    this.channel = queueKeys.replies(gatewayId);
    this.stream = queueKeys.requests(gatewayId);
    for (const [conn, name] of [
      [this.cmd, 'cmd'],
      [this.sub, 'sub'],
    ] as const) {
      conn.on('error', (err: Error) => log.debug('queue connection error', { tunnel: tunnel.id, conn: name, err: err.message }));
      conn.on('close', () => this.setUp(name, false));
    }
    // With the ready check off, 'ready' fires on TCP connect, which through the tunnel says
    // nothing about the broker's Redis: a PING (or the subscription's) answer is the signal.
    this.cmd.on('ready', () => void this.ping());
    this.sub.on('ready', () => this.subscribe());
    this.sub.on('message', (_channel: string, text: string) => this.onReply(text));
  }

  /** Rejects if the first attempt fails; the connections keep retrying regardless. */
  async connect(): Promise<void> {
    this.pingTimer = setInterval(() => void this.ping(), this.opts.pingIntervalMs);
    await Promise.all([this.cmd.connect(), this.sub.connect()]);
  }

  /**
   * Appends the request to this gateway's stream. Rejects with queue_full when the broker's
   * Redis is at its memory limit (nothing was added); any other failure leaves it unknown
   * whether the entry landed, which the caller may resolve by sending again (core's insert
   * is idempotent by id).
   */
  async send(envelope: RequestEnvelope): Promise<void> {
    try {
      await this.cmd.xadd(this.stream, '*', queueKeys.field, encodeRequest(envelope));
    } catch (err) {
      if (redisErrorCode(err) === 'OOM') throw new ApiError('queueFull', 'the broker queue is full; retry later');
      throw err;
    }
  }

  private onReply(text: string): void {
    let reply: ReplyEnvelope;
    try {
      reply = decodeReply(text);
    } catch (err) {
      // Without a readable id the reply cannot be matched; its request ends at its deadline.
      this.log.error('broker sent an unreadable reply', { tunnel: this.tunnel.id, err: (err as Error).message });
      return;
    }
    this.emit('reply', reply);
  }

  private async ping(): Promise<void> {
    if (this.cmd.status !== 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.cmd.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('ping unanswered')), this.opts.pingIntervalMs);
        }),
      ]);
      this.pingsMissed = 0;
      this.setUp('cmd', true);
    } catch (err) {
      this.pingsMissed++;
      if (this.pingsMissed >= this.opts.pingMisses && this.cmdUp) {
        this.log.warn('queue lane stopped answering', { tunnel: this.tunnel.id, missed: this.pingsMissed, err: (err as Error).message });
        this.setUp('cmd', false);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private subscribe(): void {
    this.sub.subscribe(this.channel).then(
      () => this.setUp('sub', true),
      (err: Error) => this.log.warn('queue subscribe failed', { tunnel: this.tunnel.id, err: err.message }),
    );
  }

  private setUp(which: 'cmd' | 'sub', up: boolean): void {
    if (which === 'cmd') this.cmdUp = up;
    else this.subUp = up;
    const ready = this.cmdUp && this.subUp;
    if (ready === this.ready) return;
    this.ready = ready;
    this.log.info(ready ? 'queue lane ready' : 'queue lane not ready', { tunnel: this.tunnel.id, broker: this.tunnel.peer.name });
    this.emit(ready ? 'ready' : 'unready');
  }

  close(): void {
    clearInterval(this.pingTimer);
    this.ready = false;
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}
