import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../common/log/logger';
import { queueKeys } from '../../common/queue/keys';
import type { Tunnel } from '../tunnel/tunnel';

export interface QueueCredentials {
  username: string;
  password: string;
}

/**
 * The gateway's two Redis connections through one tunnel: one for commands (XADD, GETDEL)
 * and one subscribed to this gateway's reply channel. Fail-fast: no offline queue, no
 * retries of in-flight commands (a retried XADD could enqueue twice), commands time out.
 * The broker's ACL lets this user do nothing else.
 */
export class Lane extends EventEmitter<{ ready: []; unready: []; resync: []; reply: [requestId: string] }> {
  readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly channel: string;
  private cmdUp = false;
  private subUp = false;
  private subscribedOnce = false;
  ready = false;
  /** Requests sent on this lane that have no reply yet. */
  readonly inflight = new Set<string>();

  constructor(
    readonly tunnel: Tunnel,
    gatewayId: string,
    creds: QueueCredentials,
    commandTimeoutMs: number,
    private readonly log: Logger,
  ) {
    super();
    const opts: RedisOptions = {
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
      commandTimeout: commandTimeoutMs,
      retryStrategy: (n) => Math.min(50 * 2 ** n, 2000),
      lazyConnect: true,
    };
    this.cmd = new Redis(opts);
    // No autoResubscribe: ioredis re-subscribes on reconnect without a rejection handler,
    // and with maxRetriesPerRequest 0 a connection that drops again at once (the tunnel is
    // up but the broker's redis-server is not) rejects it — an unhandled rejection that
    // would take the whole gateway down. We subscribe on every connect ourselves.
    this.sub = new Redis({ ...opts, commandTimeout: undefined, autoResubscribe: false });
    this.channel = queueKeys.replies(gatewayId);
    for (const [conn, name] of [
      [this.cmd, 'cmd'],
      [this.sub, 'sub'],
    ] as const) {
      conn.on('error', (err: Error) => log.debug('queue connection error', { tunnel: tunnel.id, conn: name, err: err.message }));
      conn.on('close', () => this.setUp(name, false));
    }
    // With the ready check off, 'ready' fires on TCP connect, which through the tunnel says
    // nothing about the broker's Redis: a PING (or the subscription's) answer is the signal.
    this.cmd.on('ready', () => {
      this.cmd.ping().then(
        () => this.setUp('cmd', true),
        (err: Error) => log.warn('queue ping failed', { tunnel: tunnel.id, err: err.message }),
      );
    });
    this.sub.on('ready', () => this.subscribe());
    this.sub.on('message', (_channel: string, requestId: string) => this.emit('reply', requestId));
  }

  /** Rejects if the first attempt fails; the connections keep retrying regardless. */
  async connect(): Promise<void> {
    await Promise.all([this.cmd.connect(), this.sub.connect()]);
  }

  private subscribe(): void {
    this.sub.subscribe(this.channel).then(
      () => {
        const again = this.subscribedOnce;
        this.subscribedOnce = true;
        this.setUp('sub', true);
        // A reply announced while we were away is fetched by the owner's resync.
        if (again) this.emit('resync');
      },
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
    this.ready = false;
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}
