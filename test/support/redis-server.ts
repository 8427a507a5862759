import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { DEFAULT_CLAIM_INTERVAL_MS, DEFAULT_MAX_BUDGET_MS } from '../../services/broker/config';
import { redisLimits, renderRedisConf, type RedisLimits } from '../../services/broker/redis/config';
import type { Logger } from '../../services/common/log/logger';
import { ChildSupervisor } from '../../services/common/lifecycle/supervisor';
import { sha256Hex } from '../../services/common/pki/digest';
import { requireBinary } from './binaries';
import { silentLogger } from './logger';
import { freePort } from './ports';
import { tempDir } from './tmp';
import { waitFor } from './wait';

/**
 * A real redis-server for integration tests, configured by the broker's own
 * renderRedisConf (ACL users with SHA-256 password hashes, no persistence, noeviction)
 * on a free loopback port in a temp dir, supervised like the broker supervises it
 * (a killed server is restarted, empty, on the same port).
 *
 * `inspector: true` appends one extra all-powerful user, used only by tests to look at
 * what the restricted users cannot (XPENDING, XRANGE, PTTL); the ACL tests leave it off
 * so they run against exactly the broker's rendered config.
 */
export interface TestGateway {
  id: string;
  username: string;
  password: string;
}

export interface TestRedisOptions {
  gateways?: string[];
  maxMemoryBytes?: number;
  /** Replaces some of the client limits the broker would derive (e.g. a shorter idle timeout). */
  limits?: Partial<RedisLimits>;
  inspector?: boolean;
  /** Fixed port (default: a free one). */
  port?: number;
  /** Reuse the passwords of another instance (two brokers serving the same gateway). */
  sameSecretsAs?: TestRedis;
  log?: Logger;
}

export type Who = 'broker' | 'inspector' | { username: string; password: string } | { gateway: string } | 'anonymous';

export class TestRedis {
  private readonly clients = new Set<Redis>();

  private constructor(
    readonly port: number,
    /** redis-server's working directory (its `dir`). */
    readonly dir: string,
    readonly brokerPassword: string,
    readonly inspectorPassword: string | undefined,
    readonly gateways: TestGateway[],
    /** The client limits its redis.conf was rendered with. */
    readonly limits: RedisLimits,
    readonly supervisor: ChildSupervisor,
    private readonly cleanupDir: () => void,
  ) {}

  static async start(opts: TestRedisOptions = {}): Promise<TestRedis> {
    const binary = requireBinary('redis-server', '/usr/bin/redis-server', '/usr/local/bin/redis-server');
    const port = opts.port ?? (await freePort());
    const tmp = tempDir('nonstop-redis-');
    const dir = join(tmp.dir, 'redis');
    mkdirSync(dir, { mode: 0o700 });
    const like = opts.sameSecretsAs;
    const brokerPassword = like?.brokerPassword ?? secret();
    const gateways = (opts.gateways ?? ['gw-a']).map((id) => ({ id, username: `gateway-${id}`, password: like?.gateways.find((g) => g.id === id)?.password ?? secret() }));
    const inspectorPassword = opts.inspector ? secret() : undefined;
    const maxMemoryBytes = opts.maxMemoryBytes ?? 64 * 1024 * 1024;
    const limits = {
      ...redisLimits({ gateways: gateways.length, maxMemoryBytes, maxBudgetMs: DEFAULT_MAX_BUDGET_MS, claimIntervalMs: DEFAULT_CLAIM_INTERVAL_MS }),
      ...opts.limits,
    };
    let conf = renderRedisConf({
      port,
      maxMemoryBytes,
      limits,
      dir,
      brokerPasswordSha256: sha256Hex(brokerPassword),
      // The broker-admin user exists in every broker's Redis; no test here logs in as it.
      adminPasswordSha256: sha256Hex(secret()),
      gateways: gateways.map((g) => ({ id: g.id, username: g.username, passwordSha256s: [sha256Hex(g.password)] })),
    });
    if (inspectorPassword) conf += `user inspector on #${sha256Hex(inspectorPassword)} ~* &* +@all\n`;
    const confPath = join(tmp.dir, 'redis.conf');
    writeFileSync(confPath, conf, { mode: 0o600 });
    const supervisor = new ChildSupervisor(
      { name: 'redis', command: binary, args: [confPath], stopSignal: 'SIGTERM', stopTimeoutMs: 5000, backoff: { baseMs: 50, capMs: 200, minMs: 20 } },
      opts.log ?? silentLogger(),
    );
    supervisor.start();
    const r = new TestRedis(port, dir, brokerPassword, inspectorPassword, gateways, limits, supervisor, tmp.cleanup);
    try {
      await r.waitUntilAnswering();
    } catch (err) {
      await r.stop();
      throw err;
    }
    return r;
  }

  gateway(id: string): TestGateway {
    const g = this.gateways.find((x) => x.id === id);
    if (!g) throw new Error(`no gateway ${id}`);
    return g;
  }

  /** Connection options for `who` (no connection made). */
  options(who: Who): RedisOptions {
    const base: RedisOptions = { host: '127.0.0.1', port: this.port, enableReadyCheck: false, disableClientInfo: true, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null };
    if (who === 'anonymous') return base;
    if (who === 'broker') return { ...base, username: 'broker', password: this.brokerPassword };
    if (who === 'inspector') {
      if (!this.inspectorPassword) throw new Error('started without inspector');
      return { ...base, username: 'inspector', password: this.inspectorPassword };
    }
    if ('gateway' in who) {
      const g = this.gateway(who.gateway);
      return { ...base, username: g.username, password: g.password };
    }
    return { ...base, username: who.username, password: who.password };
  }

  /** A connected client, closed by stop() (or earlier by the caller). */
  async client(who: Who): Promise<Redis> {
    const c = new Redis(this.options(who));
    c.on('error', () => undefined);
    this.clients.add(c);
    c.once('end', () => this.clients.delete(c));
    await c.connect();
    return c;
  }

  async waitUntilAnswering(timeoutMs = 10_000): Promise<void> {
    await waitFor(
      'redis-server to answer',
      async () => {
        const c = new Redis({ ...this.options('broker'), enableOfflineQueue: false });
        c.on('error', () => undefined);
        try {
          await c.connect();
          return (await c.ping()) === 'PONG';
        } finally {
          c.disconnect();
        }
      },
      timeoutMs,
      50,
    );
  }

  /** SIGKILL; the supervisor starts a new, empty redis-server on the same port. Resolves once it answers. */
  async crash(): Promise<void> {
    const started = once(this.supervisor, 'started');
    const exited = once(this.supervisor, 'exited');
    this.supervisor.signal('SIGKILL');
    await exited;
    await started;
    await this.waitUntilAnswering();
  }

  /** Stops redis-server (SIGTERM, as the broker does) but keeps the directory for inspection. */
  async stopServer(): Promise<void> {
    for (const c of this.clients) c.disconnect();
    this.clients.clear();
    await this.supervisor.stop();
  }

  async stop(): Promise<void> {
    await this.stopServer();
    this.cleanupDir();
  }
}

function secret(): string {
  return randomBytes(24).toString('base64url');
}
