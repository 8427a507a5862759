import { Redis } from 'ioredis';
import { ADMIN_USERNAME, gatewayAclRules, type RedisGatewayUser, type RedisLimits } from './config';
import { writeRedisConf, type BrokerRedisConf } from './server';

/** One change of the gateways' Redis users, and the whole list it leads to. */
export interface GatewayUsersChange {
  /** The gateways served once applied: redis.conf is rewritten for them. */
  gateways: RedisGatewayUser[];
  /** redisLimits() for that many gateways. */
  limits: RedisLimits;
  /** Users to create, or to rewrite whole (their old password no longer works). */
  upsert: RedisGatewayUser[];
  /** Usernames whose open connections are cut after the rewrite: they authenticated with an old password. */
  cut: string[];
  /** Usernames to delete: disabled, their connections cut, then deleted. */
  remove: string[];
}

/**
 * Changes the gateway users of the broker's running redis-server without a restart, as the
 * `broker-admin` user. redis.conf is rewritten first, so a redis-server the supervisor
 * restarts meanwhile starts with the new users; every command is idempotent, so a change
 * that failed half-way (Redis restarting, a timeout) is simply applied again.
 *
 * A removed user is switched off before its connections are cut, so none can authenticate
 * in between; it is deleted last (Redis 7 would also cut them on DELUSER; cutting them
 * explicitly does not depend on that). Limits derived from the gateway count are set
 * before new users exist and after removed ones are gone, so they never lock out a
 * gateway that is served.
 */
export class RedisGatewayUsers {
  constructor(private readonly base: BrokerRedisConf) {}

  async apply(change: GatewayUsersChange): Promise<void> {
    writeRedisConf({ ...this.base, conf: { ...this.base.conf, gateways: change.gateways, limits: change.limits } });
    const admin = new Redis({
      host: '127.0.0.1',
      port: this.base.conf.port,
      username: ADMIN_USERNAME,
      password: this.base.adminPassword,
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: false,
      disableClientInfo: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 5000,
      commandTimeout: 5000,
    });
    // Failures reach the caller through the commands' promises.
    admin.on('error', () => undefined);
    try {
      await admin.connect();
      for (const username of change.remove) {
        await admin.call('ACL', 'SETUSER', username, 'off');
        await admin.call('CLIENT', 'KILL', 'USER', username);
        await admin.call('ACL', 'DELUSER', username);
      }
      await admin.call('CONFIG', 'SET', 'maxclients', String(change.limits.maxclients), 'maxmemory-clients', String(change.limits.maxmemoryClients));
      for (const g of change.upsert) await admin.call('ACL', 'SETUSER', g.username, 'reset', ...gatewayAclRules(g));
      for (const username of change.cut) await admin.call('CLIENT', 'KILL', 'USER', username);
    } finally {
      admin.disconnect();
    }
  }
}
