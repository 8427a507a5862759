import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import { ApiError } from '../../common/errors/api-error';
import type { Logger } from '../../common/log/logger';
import { decodeReply, encodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../../common/queue/envelope';
import { queueKeys } from '../../common/queue/keys';
import { redisErrorCode } from '../../common/queue/redis-errors';
import { channelConnector } from '../tunnel/channel-connector';
import type { Tunnel } from '../tunnel/tunnel';
import type { QueuePasswords } from './passwords';

export interface QueueCredentials {
  username: string;
  /** Followed files: the current password and, during a rotation, the previous one. */
  passwords: QueuePasswords;
}

/** The broker's Redis refused every password the gateway holds (WRONGPASS for each). */
export class QueuePasswordRefused extends Error {
  constructor() {
    super('the broker refused every queue password');
    this.name = 'QueuePasswordRefused';
  }
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
 *
 * Passwords (queue-password rotation): every connection AUTHs itself, with the current
 * password first and the previous one when the broker answers WRONGPASS (it has not loaded
 * the new hash yet). Once the current password changes, the lane moves its open connections
 * to it before `retire` drops the old one: the command connection re-AUTHs in place (a
 * refused AUTH leaves it authenticated as before, so it is simply tried again at the next
 * ping), the subscribed one — which cannot AUTH while subscribed — is replaced
 * make-before-break: a new connection AUTHs with the new password and subscribes before
 * the old one unsubscribes and closes. No request fails for it; a reply published while
 * both are subscribed comes twice and the dispatcher ignores the second.
 */
export class Lane extends EventEmitter<{ ready: []; unready: []; reply: [reply: ReplyEnvelope] }> {
  private readonly cmd: Redis;
  private sub: Redis;
  private readonly redisOpts: RedisOptions;
  /** The password the command connection is authenticated with (undefined: not yet). */
  private cmdPassword: string | undefined;
  /** Counts the command connection's connects and closes, so that a stale AUTH answer is dropped. */
  private cmdEpoch = 0;
  private subPassword: string | undefined;
  private subscribing = false;
  private cmdAuth: Promise<void> | undefined;
  /** The subscribed connection that is replacing `sub`, while it is set up. */
  private handover: Redis | undefined;
  private refusedLogged = false;
  private closed = false;
  private readonly onPasswordsChanged = (): void => void this.ping();
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
    private readonly creds: QueueCredentials,
    private readonly opts: LaneOptions,
    private readonly log: Logger,
  ) {
    super();
    // No username/password here: the lane AUTHs each connection itself (see above).
    this.redisOpts = {
      Connector: channelConnector(tunnel),
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
    this.cmd = new Redis(this.redisOpts);
    this.channel = queueKeys.replies(gatewayId);
    this.stream = queueKeys.requests(gatewayId);
    this.sub = this.newSubscriber();
    this.cmd.on('error', (err: Error) => log.debug('queue connection error', { tunnel: tunnel.id, conn: 'cmd', err: err.message }));
    this.cmd.on('close', () => {
      this.cmdEpoch++;
      this.cmdPassword = undefined;
      this.setUp('cmd', false);
    });
    // With the ready check off, 'ready' fires on TCP connect, which through the tunnel says
    // nothing about the broker's Redis: a PING (or the subscription's) answer is the signal.
    this.cmd.on('ready', () => {
      this.cmdEpoch++;
      this.cmdPassword = undefined;
      void this.ping();
    });
    creds.passwords.on('changed', this.onPasswordsChanged);
  }

  /**
   * A connection for the reply channel. No autoResubscribe: ioredis re-subscribes on
   * reconnect without a rejection handler, and with maxRetriesPerRequest 0 a connection that
   * drops again at once (the tunnel is up but the broker's redis-server is not) rejects it —
   * an unhandled rejection that would take the whole gateway down. We subscribe on every
   * connect ourselves. Events of a connection that is no longer `sub` (replaced at a
   * password change) do not touch the lane's state; its replies are still delivered.
   */
  private newSubscriber(): Redis {
    const sub = new Redis({ ...this.redisOpts, commandTimeout: undefined, autoResubscribe: false });
    sub.on('error', (err: Error) => this.log.debug('queue connection error', { tunnel: this.tunnel.id, conn: 'sub', err: err.message }));
    sub.on('close', () => {
      if (sub !== this.sub) return;
      this.subPassword = undefined;
      this.setUp('sub', false);
    });
    sub.on('ready', () => {
      if (sub === this.sub) void this.subscribe();
    });
    sub.on('message', (_channel: string, text: string) => this.onReply(text));
    return sub;
  }

  /** Both connections are authenticated with the current password (the rotation's move is done). */
  onCurrentPassword(): boolean {
    const current = this.currentPassword();
    return this.cmdPassword === current && this.subPassword === current;
  }

  private currentPassword(): string {
    return this.creds.passwords.list()[0]!;
  }

  /** AUTHs a fresh connection: each password in turn, best first. Undefined: all refused. */
  private async authenticate(conn: Redis): Promise<string | undefined> {
    for (const password of this.creds.passwords.list()) {
      try {
        await conn.call('AUTH', this.creds.username, password);
        this.refusedLogged = false;
        return password;
      } catch (err) {
        if (redisErrorCode(err) !== 'WRONGPASS') throw err;
      }
    }
    if (!this.refusedLogged) {
      this.refusedLogged = true;
      this.log.warn('the broker refused every queue password', { tunnel: this.tunnel.id, broker: this.tunnel.peer.name, passwords: this.creds.passwords.list().length });
    }
    return undefined;
  }

  /** Authenticates the command connection, or moves it to the current password. */
  /** One AUTH at a time on the command connection, for the same reason as subscribe()'s guard. */
  private authenticateCmd(): Promise<void> {
    this.cmdAuth ??= this.authenticateCmdOnce().finally(() => (this.cmdAuth = undefined));
    return this.cmdAuth;
  }

  private async authenticateCmdOnce(): Promise<void> {
    const current = this.currentPassword();
    if (this.cmdPassword === current) return;
    const epoch = this.cmdEpoch;
    if (this.cmdPassword === undefined) {
      const password = await this.authenticate(this.cmd);
      if (epoch === this.cmdEpoch) this.cmdPassword = password;
      return;
    }
    try {
      await this.cmd.call('AUTH', this.creds.username, current);
      if (epoch === this.cmdEpoch) this.cmdPassword = current;
    } catch (err) {
      // The broker does not accept the new password yet: the connection stays on the old one.
      if (redisErrorCode(err) !== 'WRONGPASS') throw err;
    }
  }

  /** Replaces the subscribed connection by one on the current password (make-before-break). */
  private async moveSubscriber(): Promise<void> {
    const current = this.currentPassword();
    const next = this.newSubscriber();
    this.handover = next;
    try {
      await next.connect();
      await next.call('AUTH', this.creds.username, current);
      await next.subscribe(this.channel);
      if (this.closed) throw new Error('lane closed');
      const old = this.sub;
      this.sub = next;
      this.subPassword = current;
      // Replies published before `next` subscribed may still be on their way on `old`; its
      // UNSUBSCRIBE answer comes after them.
      await old.unsubscribe(this.channel).catch(() => undefined);
      old.disconnect();
      this.log.info('queue connections moved to the current password', { tunnel: this.tunnel.id, broker: this.tunnel.peer.name });
    } catch (err) {
      // WRONGPASS (the broker has not loaded the new hash) or a failed connect: tried again at the next ping.
      this.log.debug('queue subscriber not moved yet', { tunnel: this.tunnel.id, err: (err as Error).message });
      next.disconnect();
    } finally {
      this.handover = undefined;
    }
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
    if (this.closed) return;
    if (this.subUp && this.subPassword !== this.currentPassword() && !this.handover) void this.moveSubscriber();
    else if (!this.subUp && !this.subscribing && this.sub.status === 'ready') void this.subscribe();
    if (this.cmd.status !== 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          await this.authenticateCmd();
          if (this.cmdPassword === undefined) throw new QueuePasswordRefused();
          await this.cmd.ping();
        })(),
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

  private async subscribe(): Promise<void> {
    // One setup at a time (the connection's 'ready' and a ping may both ask): a broker
    // replacing its tunnel counts this connection's first two answers (AUTH, SUBSCRIBE) as
    // the lane being connected, so a second AUTH must not stand in for the SUBSCRIBE's.
    if (this.subscribing) return;
    const sub = this.sub;
    this.subscribing = true;
    try {
      const password = await this.authenticate(sub);
      // Refused: tried again at the next ping.
      if (password === undefined || sub !== this.sub) return;
      await sub.subscribe(this.channel);
      if (sub !== this.sub) return;
      this.subPassword = password;
      this.setUp('sub', true);
    } catch (err) {
      this.log.warn('queue subscribe failed', { tunnel: this.tunnel.id, err: (err as Error).message });
    } finally {
      this.subscribing = false;
    }
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
    this.closed = true;
    this.creds.passwords.off('changed', this.onPasswordsChanged);
    clearInterval(this.pingTimer);
    this.ready = false;
    this.cmd.disconnect();
    this.sub.disconnect();
    this.handover?.disconnect();
  }
}
