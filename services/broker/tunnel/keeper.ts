import { EventEmitter } from 'node:events';
import { lookup } from 'node:dns/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'ssh2';
import { backoffDelay } from '../../common/lifecycle/backoff';
import type { Logger } from '../../common/log/logger';
import { sequenceToSend } from '../../common/knock/sequence';
import { fingerprintOfBlob } from '../../common/pki/ssh-keys';
import type { GatewayTarget } from '../config';
import { sendKnock } from '../knock/client';
import { gatewayClockOffset } from '../knock/gateway-clock';
import { MAX_QUEUE_CHANNELS_PER_GATEWAY } from '../redis/config';

export type TunnelState = 'idle' | 'knocking' | 'connecting' | 'up' | 'backoff' | 'stopped';

export interface KeeperOptions {
  privateKey: string;
  user: string;
  readyTimeoutMs: number;
  /** How long a TCP connection to the SSH port may take after a knock before it counts as refused. */
  connectTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  knockGapMs: number;
  knockSettleMs: number;
  reconnect: { baseMs: number; capMs: number };
  /** The port the gateway is asked to forward (its side of the tunnel). */
  queuePort: number;
  /** Where our redis-server listens on loopback (the broker's side). */
  redisPort: number;
  /** The broker's wall clock (injectable so tests can skew it). */
  now?: () => number;
}

class HostKeyMismatchError extends Error {
  constructor(readonly gatewayId: string, readonly presented: string) {
    super(`gateway ${gatewayId} presented host key ${presented}, which is not the pinned one`);
    this.name = 'HostKeyMismatchError';
  }
}

/**
 * Keeps one gateway's tunnel up: knock, SSH with the gateway's host key pinned, ask for
 * the reverse forward of the queue port, carry each forwarded connection to the local
 * redis-server — and on any failure start over after a capped, jittered backoff. A host
 * key mismatch is logged as an error every time (someone may be impersonating the gateway).
 *
 * Each forwarded channel is a connection to our Redis, which every gateway's queue shares.
 * The gateway is not trusted with that: it gets at most MAX_QUEUE_CHANNELS_PER_GATEWAY
 * open at once (its lane uses two), and further channels are refused, so a compromised
 * gateway cannot use up Redis's client slots or memory by opening connections.
 */
export class TunnelKeeper extends EventEmitter<{ state: [TunnelState] }> {
  state: TunnelState = 'idle';
  private client: Client | undefined;
  private stopped = false;
  private attempt = 0;
  /** The gateway's clock minus ours, as last measured; undefined until it is needed. */
  private clockOffsetMs: number | undefined;
  private wake: (() => void) | undefined;
  connects = 0;
  /** Forwarded channels refused because the gateway already had the most it may open. */
  refusedChannels = 0;
  /** Forwarded channels open now (each one a connection to Redis). */
  openChannels = 0;

  constructor(
    readonly gateway: GatewayTarget,
    private readonly opts: KeeperOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  private setState(s: TunnelState): void {
    this.state = s;
    this.emit('state', s);
  }

  start(): void {
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.connectOnce();
        this.attempt = 0;
      } catch (err) {
        if (this.stopped) break;
        const level = err instanceof HostKeyMismatchError ? 'error' : 'warn';
        this.log[level]('tunnel attempt failed', { gateway: this.gateway.id, err: (err as Error).message, attempt: this.attempt });
      }
      if (this.stopped) break;
      this.setState('backoff');
      const delay = backoffDelay({ baseMs: this.opts.reconnect.baseMs, capMs: this.opts.reconnect.capMs, minMs: 50 }, this.attempt++);
      await this.interruptibleSleep(delay);
    }
    this.setState('stopped');
  }

  private async interruptibleSleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /**
   * Opens the TCP connection to the SSH port. A knock that worked shows as a connection
   * within moments; one that did not (dropped SYNs) would otherwise sit in the kernel's SYN
   * retries for the whole SSH handshake timeout, so it is given up on early.
   */
  private tcpConnect(address: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: address, port: this.gateway.sshPort });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error('the SSH port did not open after the knock'));
      }, this.opts.connectTimeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.setNoDelay(true);
        resolve(sock);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** One knock-connect-forward cycle; resolves when an established tunnel closes. */
  private async connectOnce(): Promise<void> {
    const { address } = await lookup(this.gateway.host);
    this.setState('knocking');
    const now = this.opts.now ?? Date.now;
    if (this.gateway.knock.mode === 'time' && this.clockOffsetMs === undefined) {
      // Knock in the gateway's time window, not ours: our clock may be off by more than one.
      this.clockOffsetMs = (await gatewayClockOffset(address, this.gateway.httpsPort, this.opts.connectTimeoutMs, now)) ?? 0;
      if (Math.abs(this.clockOffsetMs) > 2000) this.log.warn("this host's clock differs from the gateway's; knocking in the gateway's time", { gateway: this.gateway.id, offsetMs: this.clockOffsetMs });
    }
    await sendKnock(address, sequenceToSend(this.gateway.knock, now() + (this.clockOffsetMs ?? 0)), this.opts.knockGapMs);
    // Give the gateway the moment it needs to see the last SYN and open its firewall.
    await sleep(this.opts.knockSettleMs);
    if (this.stopped) return;
    this.setState('connecting');
    let sock: Socket;
    try {
      sock = await this.tcpConnect(address);
    } catch (err) {
      // Measure the gateway's clock again before the next knock: it may have moved.
      this.clockOffsetMs = undefined;
      throw err;
    }
    // Stopped while connecting (its gateway removed from the list): no tunnel after all.
    if (this.stopped) {
      sock.destroy();
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const client = new Client();
      this.client = client;
      let up = false;
      let mismatch: HostKeyMismatchError | undefined;
      let openChannels = 0;
      let warnedAboutChannels = false;
      this.openChannels = 0;
      client.on('ready', () => {
        client.forwardIn('127.0.0.1', this.opts.queuePort, (err) => {
          if (err) {
            client.end();
            return reject(new Error(`gateway refused the queue forward: ${err.message}`));
          }
          up = true;
          this.connects++;
          this.setState('up');
          this.log.info('tunnel up', { gateway: this.gateway.id, address });
        });
      });
      client.on('tcp connection', (info, accept, rejectConn) => {
        if (info.destPort !== this.opts.queuePort) return rejectConn();
        if (openChannels >= MAX_QUEUE_CHANNELS_PER_GATEWAY) {
          this.refusedChannels++;
          // Once per SSH connection: a gateway that keeps asking must not flood the log.
          if (!warnedAboutChannels) this.log.warn('gateway opened more queue connections than it may; refusing the extra ones', { gateway: this.gateway.id, max: MAX_QUEUE_CHANNELS_PER_GATEWAY });
          warnedAboutChannels = true;
          return rejectConn();
        }
        openChannels++;
        this.openChannels = openChannels;
        // The slot is the Redis connection: free once either end of the pair is gone.
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          openChannels--;
          this.openChannels = openChannels;
        };
        const channel = accept();
        const redis = netConnect(this.opts.redisPort, '127.0.0.1');
        redis.setNoDelay(true);
        redis.on('error', () => channel.close());
        channel.on('error', () => redis.destroy());
        channel.on('close', () => {
          release();
          redis.destroy();
        });
        redis.on('close', () => {
          release();
          // What the gateway sent that Redis never read (all of it, if Redis was down) would
          // leave the channel paused: it would never end, and ssh2 closes a channel only
          // after it ended. Discard it, so the channel closes.
          channel.resume();
          channel.close();
        });
        channel.pipe(redis).pipe(channel);
      });
      client.on('error', (err) => {
        if (!up) reject(mismatch ?? err);
        else this.log.warn('tunnel error', { gateway: this.gateway.id, err: err.message });
      });
      client.on('close', () => {
        this.client = undefined;
        sock.destroy();
        if (up) {
          this.log.warn('tunnel closed', { gateway: this.gateway.id });
          resolve();
        } else reject(mismatch ?? new Error('connection closed before the tunnel was up'));
      });
      client.connect({
        sock,
        username: this.opts.user,
        privateKey: this.opts.privateKey,
        readyTimeout: this.opts.readyTimeoutMs,
        keepaliveInterval: this.opts.keepaliveIntervalMs,
        keepaliveCountMax: this.opts.keepaliveCountMax,
        hostVerifier: (key: Buffer) => {
          const presented = fingerprintOfBlob(key);
          if (presented === this.gateway.hostKeyFingerprint) return true;
          mismatch = new HostKeyMismatchError(this.gateway.id, presented);
          return false;
        },
      });
    });
  }

  stop(): void {
    this.stopped = true;
    this.client?.end();
    this.wake?.();
  }
}
