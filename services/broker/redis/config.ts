import { MAX_RESPONSE_BYTES } from '../core-client/client';
import { MAX_ENVELOPE_BYTES } from '../../common/queue/envelope';
import { queueKeys } from '../../common/queue/keys';

/**
 * redis.conf for the broker's queue (pure, unit tested; the ACL and the limits are tested
 * against the real redis-server). Loopback only, nothing ever written to disk, a memory
 * ceiling that pushes back instead of evicting, users that can do only their own job, and
 * limits that keep one gateway from exhausting the Redis every gateway's queue lives in:
 *
 * - `default` is off: no unauthenticated access at all.
 * - `broker` (this app): consumes the request streams, publishes replies, trims expired
 *   requests, dead-letters, and exempts its own two connections from client eviction.
 * - `broker-admin` (this app, only while it applies a new gateway list): creates, rewrites
 *   and deletes gateway users, cuts their connections, re-sizes the client limits. Kept
 *   apart from `broker`, whose connections carry what gateways queue.
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
  adminPasswordSha256: string;
  gateways: RedisGatewayUser[];
  /** From redisLimits(). */
  limits: RedisLimits;
}

/** A gateway's Redis user, as the broker's gateway list describes it. */
export interface RedisGatewayUser {
  id: string;
  username: string;
  /** Every password the user accepts (two during a rotation's overlap). */
  passwordSha256s: readonly string[];
}

/** The user the broker changes gateway users and client limits with at run time. */
export const ADMIN_USERNAME = 'broker-admin';
/** Redis users a gateway's queueUsername may not take. */
export const RESERVED_USERNAMES: readonly string[] = ['default', 'broker', ADMIN_USERNAME];

/**
 * Forwarded channels — each one a Redis connection — the keeper carries per gateway SSH
 * connection (services/broker/tunnel/keeper.ts). A gateway's lane needs two (commands and
 * its subscription); four times that leaves room for a lane that reconnects while its old
 * channels are still closing. A gateway that asks for more is refused, so a compromised
 * one cannot take Redis's client slots (maxclients below) from the others.
 */
export const MAX_QUEUE_CHANNELS_PER_GATEWAY = 8;
/**
 * Stream entries the consumer takes per XREADGROUP or XAUTOCLAIM (broker/queue/consumer.ts).
 * Its connections are exempt from client eviction, but their buffers still count toward
 * maxmemory-clients: a batch larger than the room left for it would make Redis disconnect
 * every gateway's connections instead. Four envelopes of the largest size are 8.25 MiB;
 * one round trip per four requests costs the consumer nothing it would notice.
 */
export const MAX_ENTRIES_PER_READ = 4;
/** A healthy gateway's connections through one tunnel: the lane's commands and its subscription. */
const LANE_CONNECTIONS = 2;
/**
 * The broker's own connections: the consumer's reader and writer, startRedis's readiness
 * probe, and one reconnect that overlaps the connection it replaces.
 */
const BROKER_CONNECTIONS = 4;
/**
 * What one idle client costs Redis 7, rounded up: measured ~22 KiB subscribed and ~37 KiB
 * after a command (client struct, 16 KiB reply buffer, query buffer).
 */
const CLIENT_IDLE_BYTES = 64 * 1024;
/**
 * Slack above the application's own size limits, so that the application limit is the one
 * that decides near the boundary: an envelope a little over MAX_ENVELOPE_BYTES still
 * reaches the consumer and is dead-lettered as `oversize`, with a metric and a log line
 * naming the gateway, instead of ending in a protocol error only Redis's log shows.
 */
const LIMIT_MARGIN_BYTES = 64 * 1024;
/** The longest QUEUE_PING_INTERVAL_MS a gateway accepts (services/gateway/config.ts). */
const GATEWAY_MAX_PING_INTERVAL_MS = 60_000;

export interface RedisLimitInputs {
  /** Gateways this broker serves (each has its own Redis user). */
  gateways: number;
  /** REDIS_MAXMEMORY_BYTES. */
  maxMemoryBytes: number;
  /** QUEUE_MAX_BUDGET_MS: how long the consumer's reader may wait, idle, for a free worker. */
  maxBudgetMs: number;
  /** CLAIM_INTERVAL_MS: the longest gap between the consumer writer's commands. */
  claimIntervalMs: number;
}

export interface RedisLimits {
  /** proto-max-bulk-len: the largest single argument Redis reads. */
  protoMaxBulkLen: number;
  /** client-query-buffer-limit: the most unparsed input one client may hold. */
  clientQueryBufferLimit: number;
  /** maxmemory-clients: all clients' buffers together; beyond it the largest are disconnected. */
  maxmemoryClients: number;
  /** What maxmemoryClients would be without its cap at half of maxmemory (more is never needed). */
  clientMemoryWanted: number;
  maxclients: number;
  /** timeout: seconds after which an idle client is disconnected. */
  timeoutSeconds: number;
  /** client-output-buffer-limit pubsub: hard bytes, soft bytes, soft seconds. */
  pubsub: { hardBytes: number; softBytes: number; softSeconds: number };
}

/**
 * Every limit Redis applies to its clients, derived in this one place from the broker's
 * configuration. The threat is a compromised gateway using its own queue credentials: one
 * 300 MB XADD argument took Redis to ~307 MiB against a 64 MiB maxmemory, and half of a
 * 400 MB one held ~200 MiB until the kernel killed redis-server (the queue of every
 * gateway gone). Redis reads a whole command before the ACL or maxmemory looks at it, so
 * only these limits act while it is being read:
 *
 * - Argument size: no envelope above MAX_ENVELOPE_BYTES is ever decoded (the consumer
 *   dead-letters it), whatever a gateway's body limit, so Redis refuses any argument above
 *   that (plus the margin) from its length prefix, before it allocates for it. The body
 *   limit does not enter: an envelope carries the body JSON-escaped, which can double it,
 *   and the envelope limit is what the broker enforces on the result.
 * - Query buffer: one whole argument plus the start of the next pipelined command.
 * - Client memory: a gateway can still send many arguments of the allowed size in one
 *   command (Redis holds them all until the command is complete), or subscribe and stop
 *   reading. maxmemory-clients counts both (query buffers, parsed arguments, output) and
 *   disconnects the largest clients first once the total is reached. It leaves room for
 *   every legitimate connection idle, one gateway's full reply burst, a query buffer's
 *   worth of envelopes being read and the consumer's largest batch. The broker's own
 *   connections are exempt (CLIENT NO-EVICT: a gateway that queues large envelopes makes
 *   them the largest clients), and their batch is bounded (MAX_ENTRIES_PER_READ), since
 *   their buffers still count. Client memory counts toward maxmemory too, so the limit is
 *   capped at half of maxmemory: an attacker's buffers never take more than half of the
 *   room the queues have (with less than the limit wants, a burst of large replies may
 *   get a subscriber disconnected; startRedis warns).
 * - Connections: the keeper carries at most MAX_QUEUE_CHANNELS_PER_GATEWAY per gateway, so
 *   maxclients = that for every gateway plus the broker's own is never reached by a
 *   gateway's connections, and one gateway cannot lock another out.
 * - Idle timeout: a connection that holds a half-sent command (or nothing) and stays
 *   silent is dropped. Redis never applies `timeout` to subscribed clients (a lane's
 *   subscription is silent between replies) nor to blocked ones (the reader's XREADGROUP
 *   BLOCK); the others must stay under it when healthy: a lane pings at least every 60 s,
 *   the consumer's writer speaks every CLAIM_INTERVAL_MS, and its reader waits for a free
 *   worker at most QUEUE_MAX_BUDGET_MS. Twice the longest of those.
 * - Reply buffers (pubsub class): a reply is at most what core may answer
 *   (MAX_RESPONSE_BYTES) plus the envelope around it. Up to four may wait for a slow
 *   tunnel; more than two held for 10 s means the subscriber is not reading. Either cuts
 *   the subscription: the gateway's lane goes unready and its requests move to another
 *   broker (core's insert is idempotent by id), and no gateway can make Redis hold more.
 */
export function redisLimits(i: RedisLimitInputs): RedisLimits {
  const protoMaxBulkLen = MAX_ENVELOPE_BYTES + LIMIT_MARGIN_BYTES;
  const clientQueryBufferLimit = 2 * protoMaxBulkLen;
  const maxReplyBytes = MAX_RESPONSE_BYTES + LIMIT_MARGIN_BYTES;
  const pubsub = { hardBytes: 4 * maxReplyBytes, softBytes: 2 * maxReplyBytes, softSeconds: 10 };
  const legitimateIdle = (i.gateways * LANE_CONNECTIONS + BROKER_CONNECTIONS) * CLIENT_IDLE_BYTES;
  const clientMemoryWanted = legitimateIdle + pubsub.hardBytes + clientQueryBufferLimit + MAX_ENTRIES_PER_READ * protoMaxBulkLen;
  const longestSilenceMs = Math.max(GATEWAY_MAX_PING_INTERVAL_MS, i.claimIntervalMs, i.maxBudgetMs);
  return {
    protoMaxBulkLen,
    clientQueryBufferLimit,
    maxmemoryClients: Math.min(clientMemoryWanted, Math.floor(i.maxMemoryBytes / 2)),
    clientMemoryWanted,
    maxclients: i.gateways * MAX_QUEUE_CHANNELS_PER_GATEWAY + BROKER_CONNECTIONS,
    timeoutSeconds: Math.ceil((2 * longestSilenceMs) / 1000),
    pubsub,
  };
}

/**
 * Why REDIS_MAXMEMORY_BYTES is too small for this many gateways, or undefined: the client
 * memory Redis may use (half of maxmemory) must hold at least every legitimate connection
 * idle and one largest envelope being read, or Redis would disconnect healthy gateways
 * whenever one request of the largest size arrived.
 */
export function redisMemoryProblem(i: Pick<RedisLimitInputs, 'gateways' | 'maxMemoryBytes'>): string | undefined {
  const need = (i.gateways * LANE_CONNECTIONS + BROKER_CONNECTIONS) * CLIENT_IDLE_BYTES + MAX_ENVELOPE_BYTES + LIMIT_MARGIN_BYTES;
  if (Math.floor(i.maxMemoryBytes / 2) >= need) return undefined;
  return `REDIS_MAXMEMORY_BYTES=${i.maxMemoryBytes}: too small for ${i.gateways} gateway(s); at least ${2 * need} (half of it is for client buffers: every gateway's connections and one largest request being read)`;
}

export function brokerAcl(passwordSha256: string): string {
  const cmds = ['ping', 'time', 'xreadgroup', 'xautoclaim', 'xclaim', 'xack', 'xdel', 'xtrim', 'xadd', 'xgroup|create', 'publish', 'xlen', 'info', 'client|no-evict'];
  return `user broker on #${passwordSha256} resetkeys resetchannels ~nonstop:v2:* &nonstop:v2:* -@all ${cmds.map((c) => `+${c}`).join(' ')}`;
}

/**
 * Only what applying a gateway list needs. ACL SETUSER could grant anything, so this user
 * is as strong as Redis itself: its password, like the broker's, lives only in the broker
 * process's memory (redis.conf holds its hash) and no connection of it carries queue data.
 */
export function adminAcl(passwordSha256: string): string {
  const cmds = ['ping', 'acl|setuser', 'acl|deluser', 'client|kill', 'config|set'];
  return `user ${ADMIN_USERNAME} on #${passwordSha256} resetkeys resetchannels -@all ${cmds.map((c) => `+${c}`).join(' ')}`;
}

/**
 * A gateway user's rules, one ACL SETUSER argument each (the selector is one argument).
 * Applied to an existing user at run time they follow `reset`, so that they replace every
 * old rule and password instead of adding to them.
 */
export function gatewayAclRules(g: RedisGatewayUser): string[] {
  return [
    'on',
    ...g.passwordSha256s.map((h) => `#${h}`),
    'resetkeys',
    'resetchannels',
    `&${queueKeys.replies(g.id)}`,
    '-@all',
    '+ping',
    '+subscribe',
    '+unsubscribe',
    // A selector (Redis 7) binds XADD to the request stream, write access only.
    `(%W~${queueKeys.requests(g.id)} +xadd)`,
  ];
}

export function gatewayAcl(g: RedisGatewayUser): string {
  return ['user', g.username, ...gatewayAclRules(g)].join(' ');
}

export function renderRedisConf(o: RedisConfOptions): string {
  const l = o.limits;
  return [
    '# Rendered by the broker at start and at each new gateway list; lives on tmpfs only.',
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
    // Client limits: see redisLimits() for why each value.
    `maxclients ${l.maxclients}`,
    `timeout ${l.timeoutSeconds}`,
    `proto-max-bulk-len ${l.protoMaxBulkLen}`,
    `client-query-buffer-limit ${l.clientQueryBufferLimit}`,
    `maxmemory-clients ${l.maxmemoryClients}`,
    // No output limit for normal clients: the broker's reader legitimately receives a whole
    // batch of envelopes at once, and a gateway's command connection is small or, if it
    // stops reading, bounded by maxmemory-clients (the broker's own are exempt from that).
    'client-output-buffer-limit normal 0 0 0',
    `client-output-buffer-limit pubsub ${l.pubsub.hardBytes} ${l.pubsub.softBytes} ${l.pubsub.softSeconds}`,
    'tcp-keepalive 30',
    'user default off resetkeys resetchannels -@all',
    brokerAcl(o.brokerPasswordSha256),
    adminAcl(o.adminPasswordSha256),
    ...o.gateways.map(gatewayAcl),
    '',
  ].join('\n');
}
