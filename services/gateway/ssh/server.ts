import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { Server, type AuthContext, type Connection } from 'ssh2';
import type { Logger } from '../../common/log/logger';
import { fingerprintOfBlob } from '../../common/pki/ssh-keys';
import type { GatewayMetrics } from '../metrics';
import { Tunnel } from '../tunnel/tunnel';
import { SSH_SERVER_ALGORITHMS } from './algorithms';
import { findAuthorizedKey, type AuthorizedKey } from './authorized-keys';
import type { FailureLimiter } from './failure-limiter';
import { forwardRefusal } from './forward-policy';
import { keyRefusal, listenRefusal } from '../../common/ssh/key-options';
import { StartupSlots } from './startup-slots';

export interface SshServerOptions {
  hostKey: string;
  authorizedKeys: readonly AuthorizedKey[];
  /** The one port a broker may ask to have forwarded (its Redis). */
  queuePort: number;
  /** Whether a TCP connection from this address may proceed (a knock grant). */
  admit: (address: string) => boolean;
  limiter: FailureLimiter;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** A connection that has not set up its forward within this time (from its TCP accept) is closed. */
  setupTimeoutMs: number;
  maxConnections: number;
  /** Connections not yet authenticated, in all and from one address (startup-slots.ts). */
  maxStartups: number;
  maxStartupsPerSource: number;
  /** The clock key expiry-time is judged by. */
  now?: () => number;
}

/** One admitted TCP connection, from accept to close. */
interface Admitted {
  socket: Socket;
  setupTimer: NodeJS.Timeout;
  client?: Connection;
  authenticated: boolean;
}

/**
 * The gateway's SSH server: the door a broker walks through after knocking. It accepts
 * public-key authentication with pinned broker keys only, and grants exactly one thing:
 * the reverse forward of the queue port on loopback. Sessions (shell, exec, sftp, agent,
 * X11), direct-tcpip (-L, -D), other ports and other global requests are refused and
 * logged.
 */
export class GatewaySshServer extends EventEmitter<{ tunnel: [Tunnel] }> {
  /**
   * Serves new connections. ssh2's Server hands every connection the one hostKeys object it
   * parsed at construction, and each connection reads its key from it at every key exchange,
   * re-keys included: changing that object in place would change an established
   * connection's host key under its client. A new host key therefore gets a new Server for
   * the connections accepted from then on (setHostKey); established ones keep theirs.
   */
  private ssh: Server;
  private readonly tcp: NetServer;
  private readonly connections = new Set<Socket>();
  private authorizedKeys: readonly AuthorizedKey[];
  /** Authenticated connections: the key each used and the address it came from. */
  private readonly authenticated = new Map<Connection, { key: AuthorizedKey; address: string; log: Logger }>();
  /** Admitted connections by "remote address|remote port", for ssh2's client to find its socket. */
  private readonly admitted = new Map<string, Admitted>();
  private readonly startups: StartupSlots<Socket>;

  constructor(
    private readonly opts: SshServerOptions,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {
    super();
    this.ssh = this.serverFor(opts.hostKey);
    // Admission happens on the raw TCP socket, before a byte of SSH is spoken.
    this.tcp = createServer((socket) => this.onSocket(socket));
    this.tcp.maxConnections = opts.maxConnections;
    this.startups = new StartupSlots({ max: opts.maxStartups, perSource: opts.maxStartupsPerSource });
    this.authorizedKeys = opts.authorizedKeys;
  }

  /**
   * Replaces the authorized keys (authorized_keys changed): new connections are checked
   * against the new list at once, and a connection whose key is no longer listed, or whose
   * new options refuse its address, is closed with its tunnel, as a revoked broker's must be.
   */
  setAuthorizedKeys(keys: readonly AuthorizedKey[]): void {
    this.authorizedKeys = keys;
    const now = (this.opts.now ?? Date.now)();
    for (const [client, { key, address, log }] of this.authenticated) {
      const still = findAuthorizedKey(keys, key.key.type, key.key.getPublicSSH());
      const why = !still ? 'key_removed' : keyRefusal(still.options, address, now);
      if (why === undefined) continue;
      this.metrics.sshRefused.inc({ kind: 'key_withdrawn' });
      log.warn('ssh connection closed: its key is no longer authorized', { broker: key.comment, why });
      this.authenticated.delete(client);
      client.end();
    }
  }

  /**
   * Presents `hostKey` to every connection from now on (SSH_HOST_KEY_FILE changed: a host key
   * rotation); connections already open keep the key their client verified. Throws, keeping
   * the key in use, if ssh2 cannot use it.
   */
  setHostKey(hostKey: string): void {
    this.ssh = this.serverFor(hostKey);
  }

  private serverFor(hostKey: string): Server {
    return new Server(
      {
        hostKeys: [hostKey],
        keepaliveInterval: this.opts.keepaliveIntervalMs,
        keepaliveCountMax: this.opts.keepaliveCountMax,
        // ssh2 prefixes "SSH-2.0-" itself.
        ident: 'nonstop',
        algorithms: SSH_SERVER_ALGORITHMS,
      },
      (client, info) => this.onClient(client, info.ip, info.port),
    );
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(port, host, () => {
        this.tcp.off('error', reject);
        this.log.info('ssh listening', { host, port });
        resolve();
      });
    });
  }

  get port(): number {
    const a = this.tcp.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  private onSocket(socket: Socket): void {
    const address = normalizeAddress(socket.remoteAddress ?? '');
    socket.on('error', () => socket.destroy());
    if (this.opts.limiter.isBlocked(address)) {
      this.metrics.sshConnections.inc({ result: 'rate_limited' });
      this.log.warn('ssh connection refused: too many failed authentications', { src: address });
      return void socket.destroy();
    }
    if (!this.opts.admit(address)) {
      this.metrics.sshConnections.inc({ result: 'no_knock' });
      this.log.warn('ssh connection refused: no open knock window', { src: address });
      return void socket.destroy();
    }
    // After the knock check: only a connection the door let in may take another's slot.
    const claim = this.startups.claim(address, socket);
    if (!claim.ok) {
      this.metrics.sshConnections.inc({ result: `startups_${claim.reason}` });
      this.log.warn('ssh connection refused: no unauthenticated slot free', { src: address, why: claim.reason });
      return void socket.destroy();
    }
    if (claim.evicted) {
      this.metrics.sshConnections.inc({ result: 'evicted' });
      this.log.warn('ssh connection closed: unauthenticated, its slot went to a newcomer', { src: normalizeAddress(claim.evicted.remoteAddress ?? ''), newcomer: address });
      claim.evicted.destroy();
    }
    this.metrics.sshConnections.inc({ result: 'admitted' });
    this.connections.add(socket);
    const key = `${socket.remoteAddress}|${socket.remotePort}`;
    // From the TCP accept, not from the client's banner: a client that never sends one
    // would otherwise hold its slot for ever.
    const conn: Admitted = {
      socket,
      authenticated: false,
      setupTimer: setTimeout(() => {
        this.log.warn('ssh connection closed: no forward requested in time', { src: address, authenticated: conn.authenticated });
        if (conn.client) conn.client.end();
        else socket.destroy();
      }, this.opts.setupTimeoutMs),
    };
    this.admitted.set(key, conn);
    socket.on('close', () => {
      clearTimeout(conn.setupTimer);
      this.startups.release(socket);
      this.connections.delete(socket);
      this.admitted.delete(key);
    });
    // Small request/reply messages cross this connection: without TCP_NODELAY, Nagle's
    // algorithm and the peer's delayed ACKs hold them back by tens of milliseconds.
    socket.setNoDelay(true);
    this.ssh.injectSocket(socket);
  }

  private onClient(client: Connection, rawAddress: string, rawPort: number): void {
    const address = normalizeAddress(rawAddress);
    const log = this.log.child({ src: address, conn: randomUUID().slice(0, 8) });
    const conn = this.admitted.get(`${rawAddress}|${rawPort}`);
    if (!conn) {
      // Gone between its banner and here (evicted, timed out): nothing to serve.
      client.end();
      return;
    }
    conn.client = client;
    let broker: AuthorizedKey | undefined;
    let tunnel: Tunnel | undefined;

    client.on('error', (err) => log.info('ssh connection error', { err: err.message }));
    client.on('close', () => {
      clearTimeout(conn.setupTimer);
      this.authenticated.delete(client);
      tunnel?.close();
    });

    client.on('authentication', (ctx: AuthContext) => {
      // The limit holds within a connection too: one that has used up its address's failures
      // gets no further attempts (not even a valid key) until the window passes.
      if (this.opts.limiter.isBlocked(address)) {
        log.warn('ssh connection closed: too many failed authentications');
        ctx.reject([]);
        return void client.end();
      }
      if (ctx.method === 'none') return ctx.reject(['publickey']);
      if (ctx.method !== 'publickey') {
        this.failAuth(address, ctx.method, log);
        return ctx.reject(['publickey']);
      }
      const match = findAuthorizedKey(this.authorizedKeys, ctx.key.algo, ctx.key.data);
      if (!match) {
        this.failAuth(address, 'publickey', log, fingerprintOfBlob(ctx.key.data));
        return ctx.reject(['publickey']);
      }
      // The key's own restrictions, checked before its signature as sshd does: a key used
      // from outside its from= or after its expiry-time is refused like an unknown one.
      const refusal = keyRefusal(match.options, address, (this.opts.now ?? Date.now)());
      if (refusal !== undefined) {
        this.failAuth(address, 'publickey', log, fingerprintOfBlob(ctx.key.data), { broker: match.comment, why: refusal, ...(refusal === 'source_not_permitted' ? { from: match.options.from?.text } : {}) });
        return ctx.reject(['publickey']);
      }
      // Without a signature this is the client asking whether the key would do.
      if (!ctx.signature) return ctx.accept();
      if (!ctx.blob || match.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
        this.failAuth(address, 'publickey', log);
        return ctx.reject(['publickey']);
      }
      broker = match;
      conn.authenticated = true;
      this.authenticated.set(client, { key: match, address, log });
      // Authenticated: its startup slot is free for the next one.
      this.startups.release(conn.socket);
      // The key's fingerprint: during a broker key rotation it tells which of the broker's two keys is in use.
      log.info('broker authenticated', { broker: match.comment, user: ctx.username, fingerprint: fingerprintOfBlob(ctx.key.data) });
      ctx.accept();
    });

    client.on('ready', () => {
      const refuse = (kind: string, detail?: Record<string, unknown>): void => {
        this.metrics.sshRefused.inc({ kind });
        log.warn('ssh request refused', { kind, broker: broker?.comment, ...detail });
      };
      client.on('session', (_accept, reject) => {
        refuse('session');
        reject();
      });
      client.on('tcpip', (_accept, reject, info) => {
        refuse('direct-tcpip', { destPort: info.destPort });
        reject();
      });
      client.on('openssh.streamlocal', (_accept, reject) => {
        refuse('streamlocal');
        reject();
      });
      client.on('request', (accept, reject, name, info) => {
        if (name === 'tcpip-forward') {
          const why = forwardRefusal(info, this.opts.queuePort, tunnel !== undefined) ?? (broker ? listenRefusal(broker.options, info) : 'not authenticated');
          if (why !== undefined) {
            refuse('tcpip-forward', { bindAddr: info.bindAddr, bindPort: info.bindPort, why });
            return reject?.();
          }
          const t = new Tunnel(randomUUID(), { name: broker?.comment ?? 'unknown' }, client, info);
          tunnel = t;
          clearTimeout(conn.setupTimer);
          accept?.();
          log.info('tunnel open', { tunnel: t.id, broker: broker?.comment });
          this.emit('tunnel', t);
          return;
        }
        if (name === 'cancel-tcpip-forward' && tunnel && info.bindPort === this.opts.queuePort) {
          tunnel.close();
          tunnel = undefined;
          return accept?.();
        }
        refuse(name, { bindAddr: info.bindAddr, bindPort: info.bindPort });
        reject?.();
      });
    });
  }

  private failAuth(address: string, method: string, log: Logger, fingerprint?: string, detail: Record<string, unknown> = {}): void {
    this.opts.limiter.recordFailure(address);
    this.metrics.sshAuthFailures.inc({ method });
    log.warn('ssh authentication failed', { method, fingerprint, ...detail });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.tcp.close(() => resolve());
      for (const s of this.connections) s.destroy();
    });
  }
}

/** "::ffff:10.0.0.2" (an IPv4 client on a dual-stack socket) → "10.0.0.2". */
function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
