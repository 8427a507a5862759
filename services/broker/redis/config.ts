import { queueKeys } from '../../common/queue/keys';

/**
 * redis.conf for the broker's queue (pure, unit tested; the ACL itself is tested against
 * the real redis-server). Loopback only, nothing ever written to disk, a memory ceiling
 * that pushes back instead of evicting, and users that can do only their own job:
 *
 * - `default` is off: no unauthenticated access at all.
 * - `broker` (this app): consumes the request streams, publishes replies, trims expired
 *   requests, dead-letters.
 * - `gateway-<id>` (each gateway, through its tunnel): XADD to its own request stream,
 *   SUBSCRIBE to its own reply channel, PING. Every other
 *   command (CONFIG, EVAL, KEYS, FLUSHALL, DEBUG, SHUTDOWN, ...) and every other key is
 *   denied. Passwords are stored as SHA-256 (`#...`): the broker never holds a gateway's
 *   password, only its hash.
 */
export interface RedisConfOptions {
  port: number;
  maxMemoryBytes: number;
  /** Working directory; must not be on persistent storage (the broker points it at tmpfs). */
  dir: string;
  brokerPasswordSha256: string;
  gateways: { id: string; username: string; passwordSha256: string }[];
}

export function brokerAcl(passwordSha256: string): string {
  const cmds = ['ping', 'time', 'xreadgroup', 'xautoclaim', 'xclaim', 'xack', 'xdel', 'xtrim', 'xadd', 'xgroup|create', 'publish', 'xlen', 'info'];
  return `user broker on #${passwordSha256} resetkeys resetchannels ~nonstop:v2:* &nonstop:v2:* -@all ${cmds.map((c) => `+${c}`).join(' ')}`;
}

export function gatewayAcl(g: { id: string; username: string; passwordSha256: string }): string {
  // A selector (Redis 7) binds XADD to the request stream, write access only.
  return [
    `user ${g.username} on #${g.passwordSha256} resetkeys resetchannels`,
    `&${queueKeys.replies(g.id)}`,
    '-@all +ping +subscribe +unsubscribe',
    `(%W~${queueKeys.requests(g.id)} +xadd)`,
  ].join(' ');
}

export function renderRedisConf(o: RedisConfOptions): string {
  return [
    '# Rendered by the broker at start; lives on tmpfs only.',
    'bind 127.0.0.1 -::1',
    `port ${o.port}`,
    'protected-mode yes',
    'daemonize no',
    'supervised no',
    'logfile ""',
    'loglevel notice',
    `dir ${o.dir}`,
    // No persistence of any kind: sensitive data passes through, nothing is stored.
    'save ""',
    'appendonly no',
    'stop-writes-on-bgsave-error no',
    // A full queue refuses writes (the gateway answers 503) rather than dropping requests.
    `maxmemory ${o.maxMemoryBytes}`,
    'maxmemory-policy noeviction',
    'enable-debug-command no',
    'enable-module-command no',
    'enable-protected-configs no',
    'acl-pubsub-default resetchannels',
    'timeout 0',
    'tcp-keepalive 30',
    'user default off resetkeys resetchannels -@all',
    brokerAcl(o.brokerPasswordSha256),
    ...o.gateways.map(gatewayAcl),
    '',
  ].join('\n');
}
