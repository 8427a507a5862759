import { hostname } from 'node:os';
import { z } from 'zod';
import { env, parseEnv, readConfigFile, readSecretFile } from '../common/config/env';
import { ConfigError } from '../common/errors/config-error';
import { RECORD_BATCH_MAX_RECORDS } from '../common/http/record-batch';
import { GATEWAY_ID } from '../common/ids/names';
import { DEFAULT_JSON_LIMITS, type JsonLimits } from '../common/json/limits';
import { staticSequenceProblem, type KnockSpec } from '../common/knock/sequence';
import { DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE } from '../common/knock/strength';
import { DEFAULT_REQUEST_TIMEOUT_MS, MAX_BUDGET_MS } from '../common/queue/timing';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../common/lifecycle/shutdown';
import { METRICS_SCRAPE_HOST_ENV } from '../common/metrics/scrape-address';
import { DEFAULT_BATCH_MAX_IN_FLIGHT, type InsertBatcherOptions } from './core-client/insert-batcher';
import { RESERVED_USERNAMES } from './redis/config';

/**
 * A request held by a worker that died is claimed by another once it has been idle this
 * long; live workers refresh theirs every third of it (services/broker/queue/consumer.ts),
 * so a slow request is never taken from a live worker however long core takes.
 */
export const DEFAULT_CLAIM_IDLE_MS = 3000;
/** How often each worker looks for requests to claim. */
export const DEFAULT_CLAIM_INTERVAL_MS = 1000;
/**
 * Requests' budgets are clipped to this and older queue entries are trimmed. It must be at
 * least the gateways' REQUEST_TIMEOUT_MS; three times the default leaves room for gateways
 * configured with more.
 */
export const DEFAULT_MAX_BUDGET_MS = 3 * DEFAULT_REQUEST_TIMEOUT_MS;

/**
 * Why these claim settings cannot work, or undefined. A dead worker's request is claimed
 * at most claimIdleMs + claimIntervalMs after it died; at or past the gateways' request
 * deadline that only ever ends in a 504.
 */
export function claimTimingProblem(claimIdleMs: number, claimIntervalMs: number): string | undefined {
  if (claimIdleMs + claimIntervalMs < DEFAULT_REQUEST_TIMEOUT_MS) return undefined;
  return `CLAIM_IDLE_MS=${claimIdleMs} + CLAIM_INTERVAL_MS=${claimIntervalMs}: must add up to less than the gateways' request deadline (REQUEST_TIMEOUT_MS, ${DEFAULT_REQUEST_TIMEOUT_MS} ms), or a dead worker's requests are claimed only after their client got a 504`;
}

const brokerEnv = {
  BROKER_ID: env.str({ def: hostname().slice(0, 32).toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'broker', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'lowercase letters, digits and -' }),
  LOG_LEVEL: env.oneOf(['error', 'warn', 'info', 'debug'], 'info'),
  BROKER_GATEWAYS_FILE: env.absPath('/etc/nonstop/broker/gateways.json'),
  // How often the broker looks for a changed gateways file (services/broker/gateways/reloader.ts); SIGHUP reads it at once.
  BROKER_GATEWAYS_POLL_MS: env.int({ min: 100, max: 3_600_000, def: 2000 }),
  SSH_KEY_FILE: env.absPath('/etc/nonstop/broker/id_ed25519'),
  SSH_USER: env.str({ def: 'broker', pattern: /^[a-z_][a-z0-9_-]{0,31}$/, expected: 'a user name' }),
  SSH_READY_TIMEOUT_MS: env.int({ min: 500, max: 120_000, def: 8000 }),
  SSH_CONNECT_TIMEOUT_MS: env.int({ min: 100, max: 60_000, def: 1500 }),
  SSH_KEEPALIVE_INTERVAL_MS: env.int({ min: 500, max: 600_000, def: 3000 }),
  SSH_KEEPALIVE_COUNT_MAX: env.int({ min: 1, max: 100, def: 3 }),
  KNOCK_GAP_MS: env.int({ min: 0, max: 5000, def: 10 }),
  KNOCK_SETTLE_MS: env.int({ min: 0, max: 5000, def: 60 }),
  RECONNECT_BASE_MS: env.int({ min: 10, max: 60_000, def: 250 }),
  RECONNECT_CAP_MS: env.int({ min: 100, max: 600_000, def: 10_000 }),
  QUEUE_PORT: env.port(6379),
  REDIS_PORT: env.port(6379),
  REDIS_MAXMEMORY_BYTES: env.int({ min: 1 << 20, max: 64 * 2 ** 30, def: 64 << 20 }),
  REDIS_BINARY: env.absPath('/usr/bin/redis-server'),
  QUEUE_MAX_BUDGET_MS: env.int({ min: 1000, max: MAX_BUDGET_MS, def: DEFAULT_MAX_BUDGET_MS }),
  WORKER_CONCURRENCY: env.int({ min: 1, max: 4096, def: 32 }),
  CLAIM_IDLE_MS: env.int({ min: 1000, max: 3_600_000, def: DEFAULT_CLAIM_IDLE_MS }),
  CLAIM_INTERVAL_MS: env.int({ min: 100, max: 600_000, def: DEFAULT_CLAIM_INTERVAL_MS }),
  SCHEMA_DIR: env.absPath('/etc/nonstop/schemas'),
  MAX_BODY_BYTES: env.int({ min: 1024, max: 16 * 1024 * 1024, def: DEFAULT_JSON_LIMITS.maxBytes }),
  MAX_DEPTH: env.int({ min: 1, max: 256, def: DEFAULT_JSON_LIMITS.maxDepth }),
  MAX_KEYS: env.int({ min: 1, max: 1_000_000, def: DEFAULT_JSON_LIMITS.maxKeys }),
  MAX_STRING_LENGTH: env.int({ min: 1, max: 16 * 1024 * 1024, def: DEFAULT_JSON_LIMITS.maxStringLength }),
  CORE_URL: env.str({ def: 'https://core:8443', pattern: /^https:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/, expected: 'https://host[:port]' }),
  CORE_CA_FILE: env.absPath('/etc/nonstop/broker/ca.crt'),
  CORE_CLIENT_CERT_FILE: env.absPath('/etc/nonstop/broker/client.crt'),
  CORE_CLIENT_KEY_FILE: env.absPath('/etc/nonstop/broker/client.key'),
  CORE_SERVER_NAME: env.optional(env.str({ pattern: /^[A-Za-z0-9.-]{1,253}$/, expected: 'a DNS name' })),
  CORE_TIMEOUT_MS: env.int({ min: 100, max: 120_000, def: 5000 }),
  CORE_MAX_IN_FLIGHT: env.int({ min: 1, max: 4096, def: 64 }),
  CORE_RETRIES: env.int({ min: 0, max: 10, def: 3 }),
  // Group commit (core-client/insert-batcher.ts): records stored in one database call at
  // most; 1 sends each alone. 32 is WORKER_CONCURRENCY: a whole read of the queue fits.
  CORE_BATCH_MAX_RECORDS: env.int({ min: 1, max: RECORD_BATCH_MAX_RECORDS, def: 32 }),
  METRICS_HOST: env.str({ def: '127.0.0.1' }),
  METRICS_PORT: env.port(9464),
  // A name of this broker on the private network, where Prometheus scrapes it (common/metrics/scrape-address.ts).
  METRICS_SCRAPE_HOST: METRICS_SCRAPE_HOST_ENV,
  SHUTDOWN_TIMEOUT_MS: env.int({ min: 1000, max: 600_000, def: DEFAULT_SHUTDOWN_TIMEOUT_MS }),
};

const knockSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('static'), ports: z.array(z.number().int().min(1).max(65535)).min(2).max(32) }).strict(),
  z
    .object({
      mode: z.literal('time'),
      secretFile: z.string().regex(/^\//),
      length: z.number().int().min(2).max(32).default(DEFAULT_KNOCK_LENGTH),
      portRange: z.string().regex(/^\d{1,5}-\d{1,5}$/).default(DEFAULT_KNOCK_PORT_RANGE),
      periodSeconds: z.number().int().min(5).max(3600).default(30),
    })
    .strict(),
]);

const HOST_KEY_FINGERPRINT = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'expected an OpenSSH SHA256:... fingerprint');

const PASSWORD_SHA256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits');

const gatewaySchema = z
  .object({
    id: z.string().regex(GATEWAY_ID),
    host: z.string().min(1).max(253),
    sshPort: z.number().int().min(1).max(65535).default(2222),
    /** The gateway's public HTTPS port, whose Date header tells the broker the gateway's time. */
    httpsPort: z.number().int().min(1).max(65535).default(443),
    /**
     * The gateway's host key fingerprint, or both during a host key rotation's overlap
     * (`nonstop-keygen rotate gateway-host-key`): the new one and the previous one.
     */
    hostKeyFingerprint: z.union([HOST_KEY_FINGERPRINT, z.array(HOST_KEY_FINGERPRINT).min(1).max(2)]),
    /**
     * The SHA-256 of the gateway's queue password, or of both passwords during a rotation's
     * overlap (`nonstop-keygen rotate queue-password`): the new one and the previous one.
     */
    queuePasswordSha256: z.union([PASSWORD_SHA256, z.array(PASSWORD_SHA256).min(1).max(2)]),
    queueUsername: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
    knock: knockSchema,
  })
  .strict();

const gatewaysFileSchema = z.object({ gateways: z.array(gatewaySchema).min(1).max(1000) }).strict();

export interface GatewayTarget {
  id: string;
  host: string;
  sshPort: number;
  httpsPort: number;
  /** Every host key the gateway may present: one, or two during a rotation (new first). */
  hostKeyFingerprints: string[];
  queueUsername: string;
  /** Every password hash the gateway's Redis user accepts: one, or two during a rotation. */
  queuePasswordSha256: string[];
  knock: KnockSpec;
}

export interface BrokerConfig {
  brokerId: string;
  logLevel: string;
  /** Served at start; the broker follows the file (gateways/reloader.ts). */
  gateways: GatewayTarget[];
  /** `text`: what `gateways` was parsed from, so that only a later change counts as one. */
  gatewaysFile: { path: string; pollMs: number; text: string };
  /** keyFile: followed with its `.previous` (tunnel/ssh-keys.ts), so a broker key rotation applies without a restart. */
  ssh: { privateKey: string; keyFile: string; user: string; readyTimeoutMs: number; connectTimeoutMs: number; keepaliveIntervalMs: number; keepaliveCountMax: number };
  knock: { gapMs: number; settleMs: number };
  reconnect: { baseMs: number; capMs: number };
  /** The port each gateway forwards to us (gateway side). */
  queuePort: number;
  /** Our redis-server's loopback port. */
  redis: { port: number; maxMemoryBytes: number; binary: string };
  queue: { maxBudgetMs: number; concurrency: number; claimIdleMs: number; claimIntervalMs: number };
  schemaDir: string;
  limits: JsonLimits;
  core: { url: string; ca: string; cert: string; key: string; serverName: string | undefined; timeoutMs: number; maxInFlight: number; retries: number };
  /** Where `core`'s CA, certificate and key came from: followed, so a rotation applies without a restart (core-client/tls-files.ts). */
  coreFiles: { ca: string; cert: string; key: string };
  coreBatch: InsertBatcherOptions;
  metrics: { host: string; port: number; scrapeHost: string | undefined };
  shutdownTimeoutMs: number;
}

export function parseGatewaysFile(path: string, text: string): GatewayTarget[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError([`BROKER_GATEWAYS_FILE=${JSON.stringify(path)}: not valid JSON`]);
  }
  const parsed = gatewaysFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join(', ');
    throw new ConfigError([`BROKER_GATEWAYS_FILE=${JSON.stringify(path)}: ${issues}`]);
  }
  const problems: string[] = [];
  const ids = new Set<string>();
  // Each gateway gets its own Redis user; `default`, `broker` and `broker-admin` are the broker's own.
  const usernames = new Set<string>(RESERVED_USERNAMES);
  const targets = parsed.data.gateways.map((g, i): GatewayTarget | undefined => {
    if (ids.has(g.id)) problems.push(`BROKER_GATEWAYS_FILE: gateways.${i}.id ${g.id} appears twice`);
    ids.add(g.id);
    const queueUsername = g.queueUsername ?? `gateway-${g.id}`;
    if (usernames.has(queueUsername)) problems.push(`BROKER_GATEWAYS_FILE: gateways.${i}.queueUsername ${queueUsername} is reserved or used by another gateway`);
    usernames.add(queueUsername);
    let knock: KnockSpec;
    if (g.knock.mode === 'static') {
      const why = staticSequenceProblem(g.knock.ports);
      if (why) problems.push(`BROKER_GATEWAYS_FILE: gateways.${i}.knock.ports: ${why}`);
      knock = { mode: 'static', ports: g.knock.ports };
    } else {
      const [start, end] = g.knock.portRange.split('-').map(Number) as [number, number];
      if (!(start >= 1 && end <= 65535 && end - start + 1 >= g.knock.length * 2)) {
        problems.push(`BROKER_GATEWAYS_FILE: gateways.${i}.knock.portRange: too small or out of 1-65535`);
        return undefined;
      }
      const secret = Buffer.from(readSecretFile(`BROKER_GATEWAYS_FILE gateways.${i}.knock.secretFile`, g.knock.secretFile), 'utf8');
      knock = { mode: 'time', secret, secretFile: g.knock.secretFile, length: g.knock.length, rangeStart: start, rangeEnd: end, periodMs: g.knock.periodSeconds * 1000 };
    }
    return {
      id: g.id,
      host: g.host,
      sshPort: g.sshPort,
      httpsPort: g.httpsPort,
      hostKeyFingerprints: typeof g.hostKeyFingerprint === 'string' ? [g.hostKeyFingerprint] : g.hostKeyFingerprint,
      queueUsername,
      queuePasswordSha256: typeof g.queuePasswordSha256 === 'string' ? [g.queuePasswordSha256] : g.queuePasswordSha256,
      knock,
    };
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return targets.filter((t): t is GatewayTarget => t !== undefined);
}

export function loadBrokerConfig(source: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const e = parseEnv(brokerEnv, source);
  const claimProblem = claimTimingProblem(e.CLAIM_IDLE_MS, e.CLAIM_INTERVAL_MS);
  if (claimProblem) throw new ConfigError([claimProblem]);
  const gatewaysText = readConfigFile('BROKER_GATEWAYS_FILE', e.BROKER_GATEWAYS_FILE);
  return {
    brokerId: e.BROKER_ID,
    logLevel: e.LOG_LEVEL,
    gateways: parseGatewaysFile(e.BROKER_GATEWAYS_FILE, gatewaysText),
    gatewaysFile: { path: e.BROKER_GATEWAYS_FILE, pollMs: e.BROKER_GATEWAYS_POLL_MS, text: gatewaysText },
    ssh: {
      privateKey: readSecretFile('SSH_KEY_FILE', e.SSH_KEY_FILE),
      keyFile: e.SSH_KEY_FILE,
      user: e.SSH_USER,
      readyTimeoutMs: e.SSH_READY_TIMEOUT_MS,
      connectTimeoutMs: e.SSH_CONNECT_TIMEOUT_MS,
      keepaliveIntervalMs: e.SSH_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: e.SSH_KEEPALIVE_COUNT_MAX,
    },
    knock: { gapMs: e.KNOCK_GAP_MS, settleMs: e.KNOCK_SETTLE_MS },
    reconnect: { baseMs: e.RECONNECT_BASE_MS, capMs: e.RECONNECT_CAP_MS },
    queuePort: e.QUEUE_PORT,
    redis: { port: e.REDIS_PORT, maxMemoryBytes: e.REDIS_MAXMEMORY_BYTES, binary: e.REDIS_BINARY },
    queue: { maxBudgetMs: e.QUEUE_MAX_BUDGET_MS, concurrency: e.WORKER_CONCURRENCY, claimIdleMs: e.CLAIM_IDLE_MS, claimIntervalMs: e.CLAIM_INTERVAL_MS },
    schemaDir: e.SCHEMA_DIR,
    limits: { maxBytes: e.MAX_BODY_BYTES, maxDepth: e.MAX_DEPTH, maxKeys: e.MAX_KEYS, maxStringLength: e.MAX_STRING_LENGTH },
    core: {
      url: e.CORE_URL,
      ca: readConfigFile('CORE_CA_FILE', e.CORE_CA_FILE),
      cert: readConfigFile('CORE_CLIENT_CERT_FILE', e.CORE_CLIENT_CERT_FILE),
      key: readSecretFile('CORE_CLIENT_KEY_FILE', e.CORE_CLIENT_KEY_FILE),
      serverName: e.CORE_SERVER_NAME,
      timeoutMs: e.CORE_TIMEOUT_MS,
      maxInFlight: e.CORE_MAX_IN_FLIGHT,
      retries: e.CORE_RETRIES,
    },
    coreFiles: { ca: e.CORE_CA_FILE, cert: e.CORE_CLIENT_CERT_FILE, key: e.CORE_CLIENT_KEY_FILE },
    coreBatch: { maxRecords: e.CORE_BATCH_MAX_RECORDS, maxInFlight: DEFAULT_BATCH_MAX_IN_FLIGHT },
    metrics: { host: e.METRICS_HOST, port: e.METRICS_PORT, scrapeHost: e.METRICS_SCRAPE_HOST },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
