import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log/logger';
import { ChildSupervisor } from '../../common/lifecycle/supervisor';
import { ConfigError } from '../../common/errors/config-error';
import { sha256Hex } from '../../common/pki/digest';
import { redisMemoryProblem, renderRedisConf, type RedisConfOptions } from './config';

/**
 * The broker's own redis-server: config written to tmpfs (0600, holding only password
 * hashes), supervised (restarted with backoff if it dies — empty, by design), stopped
 * with SIGTERM (with `save ""` it writes nothing on the way out). Refuses (ConfigError)
 * a maxmemory too small for the gateways' connections.
 */
export async function startRedis(opts: {
  binary: string;
  runDir: string;
  conf: Omit<RedisConfOptions, 'dir' | 'brokerPasswordSha256'>;
  brokerPassword: string;
  log: Logger;
}): Promise<ChildSupervisor> {
  const tooSmall = redisMemoryProblem({ gateways: opts.conf.gateways.length, maxMemoryBytes: opts.conf.maxMemoryBytes });
  if (tooSmall) throw new ConfigError([tooSmall]);
  const { maxmemoryClients, clientMemoryWanted } = opts.conf.limits;
  if (maxmemoryClients < clientMemoryWanted) {
    opts.log.warn('REDIS_MAXMEMORY_BYTES leaves client buffers less than a burst of large replies needs; a subscriber receiving one may be disconnected (its requests move to another broker)', {
      maxmemoryClients,
      wanted: clientMemoryWanted,
      maxMemoryBytesForFullRoom: 2 * clientMemoryWanted,
    });
  }
  const dir = join(opts.runDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const confPath = join(dir, 'redis.conf');
  writeFileSync(confPath, renderRedisConf({ ...opts.conf, dir, brokerPasswordSha256: sha256Hex(opts.brokerPassword) }), { mode: 0o600 });
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
