import { EventEmitter } from 'node:events';
import { lookup } from 'node:dns/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, type AuthenticationType } from 'ssh2';
import { backoffDelay } from '../../common/lifecycle/backoff';
import type { Logger } from '../../common/log/logger';
import { sequenceToSend } from '../../common/knock/sequence';
import { fingerprintOfBlob, fingerprintOfKey } from '../../common/pki/ssh-keys';
import type { GatewayTarget } from '../config';
import { sendKnock } from '../knock/client';
import { KnockSecretChooser } from '../knock/secrets';
import { gatewayClockOffset } from '../knock/gateway-clock';
import { MAX_QUEUE_CHANNELS_PER_GATEWAY } from '../redis/config';

export type TunnelState = 'idle' | 'knocking' | 'connecting' | 'up' | 'backoff' | 'stopped';

export interface KeeperOptions {
  /**
   * The broker's SSH private keys, newest first: one, or the new and the previous one during
   * a broker key rotation (BrokerSshKeys). Read at each connection: the gateway is offered
   * the newest first, the previous one if it refuses that (its authorized_keys not yet
   * reloaded), so no connection fails for a rotation whichever side notices it first.
   */
  privateKeys: () => readonly string[];
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
  /** KEY_CHANGE_GRACE_MS unless given (tests). */
  keyChangeGraceMs?: number;
  /** KEY_MOVE_RETRY_MS unless given (tests). */
  keyMoveRetryMs?: number;
  /** The broker's wall clock (injectable so tests can skew it). */
  now?: () => number;
}

class HostKeyMismatchError extends Error {
  constructor(readonly gatewayId: string, readonly presented: string) {
    super(`gateway ${gatewayId} presented host key ${presented}, which is not a pinned one`);
    this.name = 'HostKeyMismatchError';
  }
}

/** An SSH connection to the gateway whose queue forward is up. */
interface Established {
  client: Client;
  /** The fingerprint the gateway's host key was verified against. */
  hostKey: string;
  /** The private key the gateway accepted. */
  key: string;
  /** Resolves once the gateway's queue lane is working through it (or it closed). */
  laneConnected: Promise<void>;
  /** Resolves when the SSH connection has closed. */
  closed: Promise<void>;
}

/**
 * How many forwarded channels the gateway's queue lane opens through a tunnel (its command
 * and subscriber connections), and how many answers from Redis each gets before the lane is
 * ready (AUTH, then PING or SUBSCRIBE: gateway/queue/lane.ts). Open channels alone are not
 * enough: a lane connected but not yet ready does not take requests, and a request that
 * comes while no lane is ready is answered 503 no_tunnel, so the old tunnel closes only
 * once the new one's lane has had its answers.
 */
const LANE_CHANNELS = 2;
const LANE_READY_ANSWERS = 2;

/**
 * How long after our key changed a tunnel waits before moving to the new key: longer than
 * the gateway takes to reload authorized_keys (AUTHORIZED_KEYS_POLL_MS, 2 s), which keygen
 * wrote first. Offering a key the gateway does not list yet counts against this address's
 * authentication failures there (SSH_MAX_AUTH_FAILURES), so the move does not hurry.
 */
export const KEY_CHANGE_GRACE_MS = 3000;

/**
 * How far apart attempts to move a tunnel to our new key are once the gateway refused it
 * (a gateway of the fleet keygen has not been run for yet). Each refusal is one failed
 * authentication from this address there: at one per 30 s, with the one a reconnect's
 * fallback to the previous key costs, we stay under the gateway's default limit
 * (SSH_MAX_AUTH_FAILURES=5 per SSH_AUTH_FAILURE_WINDOW_MS=60 s), which would otherwise
 * lock this broker out of a gateway whose tunnel it still needs after a drop.
 */
export const KEY_MOVE_RETRY_MS = 30_000;

/**
 * Keeps one gateway's tunnel up: knock, SSH with the gateway's host key pinned, ask for
 * the reverse forward of the queue port, carry each forwarded connection to the local
 * redis-server — and on any failure start over after a capped, jittered backoff. A host
 * key mismatch is logged as an error every time (someone may be impersonating the gateway).
 *
 * Key rotations move the tunnel make-before-break: when the pinned host keys no longer
 * list the one the tunnel was verified against (setGateway), or the broker's newest key is
 * not the one it authenticated with (keysChanged), a second tunnel is set up beside it, and
 * the old one is closed only once the gateway's lane has connected through the new one.
 * The gateway re-sends whatever was in flight on the old tunnel (same ids, idempotent at
 * core), so no request fails. A change that leaves the tunnel's keys current touches nothing.
 *
 * Each forwarded channel is a connection to our Redis, which every gateway's queue shares.
 * The gateway is not trusted with that: it gets at most MAX_QUEUE_CHANNELS_PER_GATEWAY
 * open at once per connection (its lane uses two), and further channels are refused, so a
 * compromised gateway cannot use up Redis's client slots or memory by opening connections.
 */
export class TunnelKeeper extends EventEmitter<{ state: [TunnelState] }> {
  state: TunnelState = 'idle';
  /** Every SSH client of ours, set up or being set up: stop() ends them all. */
  private readonly clients = new Set<Client>();
  /** The tunnel in use; a replacement being set up is not it until it takes over. */
  private current: Established | undefined;
  private replacing = false;
  private stopped = false;
  private attempt = 0;
  /** The gateway's clock minus ours, as last measured; undefined until it is needed. */
  private clockOffsetMs: number | undefined;
  private readonly wakers = new Set<() => void>();
  /** New knock secret first, the previous one after a knock that did not open (rotation). */
  private readonly knockSecrets: KnockSecretChooser;
  connects = 0;
  /** Tunnels moved to a new connection because a key they rested on was rotated. */
  replacements = 0;
  /** Forwarded channels refused because the gateway already had the most it may open. */
  refusedChannels = 0;
  /** Forwarded channels open now (each one a connection to Redis). */
  openChannels = 0;

  constructor(
    private gatewayTarget: GatewayTarget,
    private readonly opts: KeeperOptions,
    private readonly log: Logger,
  ) {
    super();
    this.knockSecrets = new KnockSecretChooser(log);
  }

  get gateway(): GatewayTarget {
    return this.gatewayTarget;
  }

  /** The fingerprint the tunnel in use was verified against, if one is up. */
  get verifiedHostKey(): string | undefined {
    return this.current?.hostKey;
  }

  /**
   * The gateway's entry changed only in its host keys (a rotation's step): kept, unless the
   * tunnel's verified key is no longer listed, when it is replaced make-before-break.
   */
  setGateway(g: GatewayTarget): void {
    this.gatewayTarget = g;
    void this.replaceIfStale();
  }

  /** The broker's keys changed: a tunnel not on the newest one moves to it, make-before-break. */
  keysChanged(): void {
    void this.replaceIfStale();
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
        let t = await this.establish(false);
        if (t) {
          this.attempt = 0;
          this.current = t;
          // A key may have rotated while this one was being set up.
          void this.replaceIfStale();
          for (;;) {
            await t.closed;
            if (this.current === t || this.current === undefined) break;
            // Replaced: the new tunnel is the one to wait for.
            t = this.current;
          }
          this.current = undefined;
          if (!this.stopped) this.log.warn('tunnel closed', { gateway: this.gateway.id });
        }
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

  /** Whether the tunnel rests on a key that was rotated away: a host key no longer pinned, or not our newest key. */
  private stale(t: Established): boolean {
    return !this.gateway.hostKeyFingerprints.includes(t.hostKey) || t.key !== this.opts.privateKeys()[0];
  }

  /**
   * Replaces a stale tunnel make-before-break: a new one is set up while the old one still
   * carries traffic, and the old one closes once the gateway's lane is connected through the
   * new one. Tried again with backoff until it works or the tunnel is no longer stale (a new
   * key the gateway does not accept yet is refused, the previous one accepted: that is
   * still stale, and the gateway reloads its authorized_keys within seconds).
   */
  private async replaceIfStale(): Promise<void> {
    if (this.replacing) return;
    this.replacing = true;
    try {
      for (let attempt = 0; ; attempt++) {
        const old = this.current;
        if (this.stopped || !old || !this.stale(old)) return;
        if (attempt === 0 && old.key !== this.opts.privateKeys()[0]) {
          await this.interruptibleSleep(this.opts.keyChangeGraceMs ?? KEY_CHANGE_GRACE_MS);
          if (this.stopped || this.current !== old) continue;
        }
        let next: Established | undefined;
        try {
          next = await this.establish(true);
        } catch (err) {
          this.log.warn('replacement tunnel attempt failed', { gateway: this.gateway.id, err: (err as Error).message, attempt });
        }
        if (next && !this.stale(next) && this.current === old) {
          await Promise.race([next.laneConnected, sleep(this.opts.readyTimeoutMs)]);
          if (this.current === old && !this.stopped) {
            this.current = next;
            this.replacements++;
            this.log.info('tunnel replaced: the keys it was set up with were rotated', { gateway: this.gateway.id, hostKey: next.hostKey });
            old.client.end();
            continue;
          }
        }
        if (next && this.current !== next) next.client.end();
        // A move to our new key offers only that key, so each refusal counts against this
        // address at the gateway: spaced by KEY_MOVE_RETRY_MS. A host key replacement is
        // refused before authentication and only backs off.
        const movingKey = this.current !== undefined && this.current.key !== this.opts.privateKeys()[0];
        const delay = movingKey
          ? (this.opts.keyMoveRetryMs ?? KEY_MOVE_RETRY_MS)
          : backoffDelay({ baseMs: Math.max(1000, this.opts.reconnect.baseMs), capMs: Math.max(1000, this.opts.reconnect.capMs), minMs: 1000 }, attempt);
        await this.interruptibleSleep(delay);
      }
    } finally {
      this.replacing = false;
    }
  }

  private async interruptibleSleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
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

  /**
   * One knock-connect-forward cycle; resolves once the tunnel is up (undefined if stopped on
   * the way). A replacement leaves the keeper's state alone: the tunnel in use is still up.
   */
  private async establish(replacement: boolean): Promise<Established | undefined> {
    const { address } = await lookup(this.gateway.host);
    if (!replacement) this.setState('knocking');
    const now = this.opts.now ?? Date.now;
    if (this.gateway.knock.mode === 'time' && this.clockOffsetMs === undefined) {
      // Knock in the gateway's time window, not ours: our clock may be off by more than one.
      this.clockOffsetMs = (await gatewayClockOffset(address, this.gateway.httpsPort, this.opts.connectTimeoutMs, now)) ?? 0;
      if (Math.abs(this.clockOffsetMs) > 2000) this.log.warn("this host's clock differs from the gateway's; knocking in the gateway's time", { gateway: this.gateway.id, offsetMs: this.clockOffsetMs });
    }
    const knock = this.knockSecrets.next(this.gateway.knock, this.gateway.id);
    await sendKnock(address, sequenceToSend(knock.spec, now() + (this.clockOffsetMs ?? 0)), this.opts.knockGapMs);
    // Give the gateway the moment it needs to see the last SYN and open its firewall.
    await sleep(this.opts.knockSettleMs);
    if (this.stopped) return undefined;
    if (!replacement) this.setState('connecting');
    let sock: Socket;
    try {
      sock = await this.tcpConnect(address);
    } catch (err) {
      // Measure the gateway's clock again before the next knock: it may have moved.
      this.clockOffsetMs = undefined;
      this.knockSecrets.result(knock.previous, false);
      throw err;
    }
    this.knockSecrets.result(knock.previous, true);
    // Stopped while connecting (its gateway removed from the list): no tunnel after all.
    if (this.stopped) {
      sock.destroy();
      return undefined;
    }
    const pinned = this.gateway.hostKeyFingerprints;
    // A replacement is there to be on the newest key: falling back would only make another stale tunnel.
    const keys = replacement ? this.opts.privateKeys().slice(0, 1) : this.opts.privateKeys();
    return await new Promise<Established>((resolve, reject) => {
      const client = new Client();
      this.clients.add(client);
      let up = false;
      let mismatch: HostKeyMismatchError | undefined;
      let verified: string | undefined;
      let offered: string | undefined;
      let nextKey = 0;
      let openChannels = 0;
      let warnedAboutChannels = false;
      let answeredChannels = 0;
      let laneConnected!: () => void;
      const lane = new Promise<void>((r) => (laneConnected = r));
      let closed!: () => void;
      const closedP = new Promise<void>((r) => (closed = r));
      client.on('ready', () => {
        client.forwardIn('127.0.0.1', this.opts.queuePort, (err) => {
          if (err) {
            client.end();
            return reject(new Error(`gateway refused the queue forward: ${err.message}`));
          }
          up = true;
          this.connects++;
          if (!replacement) this.setState('up');
          this.log.info('tunnel up', { gateway: this.gateway.id, address, hostKey: verified, key: fingerprintOfKey(offered!), previousKey: offered !== this.opts.privateKeys()[0] });
          resolve({ client, hostKey: verified!, key: offered!, laneConnected: lane, closed: closedP });
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
        this.openChannels++;
        // The slot is the Redis connection: free once either end of the pair is gone.
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          openChannels--;
          this.openChannels--;
        };
        const channel = accept();
        const redis = netConnect(this.opts.redisPort, '127.0.0.1');
        redis.setNoDelay(true);
        // Each command of the lane's setup waits for its answer, so answers come one per read.
        let answers = 0;
        const countAnswer = (): void => {
          if (++answers !== LANE_READY_ANSWERS) return;
          redis.off('data', countAnswer);
          if (++answeredChannels >= LANE_CHANNELS) laneConnected();
        };
        redis.on('data', countAnswer);
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
        this.clients.delete(client);
        sock.destroy();
        laneConnected();
        closed();
        if (!up) reject(mismatch ?? new Error('connection closed before the tunnel was up'));
      });
      client.connect({
        sock,
        username: this.opts.user,
        readyTimeout: this.opts.readyTimeoutMs,
        keepaliveInterval: this.opts.keepaliveIntervalMs,
        keepaliveCountMax: this.opts.keepaliveCountMax,
        // Newest key first; the previous one only if the gateway refuses it.
        authHandler: (_methodsLeft, _partialSuccess, next) => {
          const key = keys[nextKey++];
          // false: no method left, ssh2 fails the connection (its types leave it out).
          if (key === undefined) return next(false as unknown as AuthenticationType);
          offered = key;
          next({ type: 'publickey', username: this.opts.user, key });
        },
        hostVerifier: (key: Buffer) => {
          const presented = fingerprintOfBlob(key);
          if (pinned.includes(presented)) {
            verified = presented;
            return true;
          }
          mismatch = new HostKeyMismatchError(this.gateway.id, presented);
          return false;
        },
      });
    });
  }

  stop(): void {
    this.stopped = true;
    for (const client of this.clients) client.end();
    for (const wake of [...this.wakers]) wake();
  }
}
