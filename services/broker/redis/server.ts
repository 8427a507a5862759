import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log/logger';
import { ChildSupervisor } from '../../common/lifecycle/supervisor';
import { ConfigError } from '../../common/errors/config-error';
import { sha256Hex } from '../../common/pki/digest';
import { redisMemoryProblem, renderRedisConf, type RedisConfOptions } from './config';

/** What the broker's redis.conf is rendered from: the same at start and at every new gateway list. */
export interface BrokerRedisConf {
  runDir: string;
  conf: Omit<RedisConfOptions, 'dir' | 'brokerPasswordSha256' | 'adminPasswordSha256'>;
  brokerPassword: string;
  /** The `broker-admin` user's password (gateways/reloader.ts changes gateway users with it). */
  adminPassword: string;
}

/**
 * Writes redis.conf to tmpfs (0600, holding only password hashes), whole or not at all: a
 * redis-server the supervisor restarts reads it, so it always describes the gateways served
 * now. Returns its path.
 */
export function writeRedisConf(o: BrokerRedisConf): string {
  const dir = join(o.runDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const confPath = join(dir, 'redis.conf');
  const text = renderRedisConf({ ...o.conf, dir, brokerPasswordSha256: sha256Hex(o.brokerPassword), adminPasswordSha256: sha256Hex(o.adminPassword) });
  const tmp = `${confPath}.next`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, confPath);
  return confPath;
}

/**
 * The broker's own redis-server: config written to tmpfs, supervised (restarted with
 * backoff if it dies — empty, by design), stopped with SIGTERM (with `save ""` it writes
 * nothing on the way out). Refuses (ConfigError) a maxmemory too small for the gateways'
 * connections.
 */
export async function startRedis(opts: BrokerRedisConf & { binary: string; log: Logger }): Promise<ChildSupervisor> {
  const tooSmall = redisMemoryProblem({ gateways: opts.conf.gateways.length, maxMemoryBytes: opts.conf.maxMemoryBytes });
  if (tooSmall) throw new ConfigError([tooSmall]);
  warnIfClientRoomShort(opts.conf.limits, opts.log);
  const confPath = writeRedisConf(opts);
  const child = new ChildSupervisor({ name: 'redis', command: opts.binary, args: [confPath], stopSignal: 'SIGTERM', stopTimeoutMs: 5000, backoff: { baseMs: 100, capMs: 2000, minMs: 50 } }, opts.log);
  child.start();
  const probe = new Redis({ port: opts.conf.port, host: '127.0.0.1', username: 'broker', password: opts.brokerPassword, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, enableReadyCheck: false, disableClientInfo: true });
  probe.on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      if (probe.status !== 'ready') await probe.connect();
      await probe.ping();
      probe.disconnect();
      return child;
    } catch {
      probe.disconnect();
      await sleep(100);
    }
  }
  throw new Error('redis-server did not answer within 10 s');
}

/** Warns when REDIS_MAXMEMORY_BYTES leaves client buffers less room than redisLimits wants. */
export function warnIfClientRoomShort(limits: RedisConfOptions['limits'], log: Logger): void {
  const { maxmemoryClients, clientMemoryWanted } = limits;
  if (maxmemoryClients >= clientMemoryWanted) return;
  log.warn('REDIS_MAXMEMORY_BYTES leaves client buffers less than a burst of large replies needs; a subscriber receiving one may be disconnected (its requests move to another broker)', {
    maxmemoryClients,
    wanted: clientMemoryWanted,
    maxMemoryBytesForFullRoom: 2 * clientMemoryWanted,
  });
}
