import { isIP } from 'node:net';
import { ConfigError } from '../common/errors/config-error';
import { env, intItem, parseEnv, readSecretFile, strItem } from '../common/config/env';
import { GATEWAY_ID } from '../common/ids/names';
import { DEFAULT_JSON_LIMITS, type JsonLimits } from '../common/json/limits';
import { staticSequenceProblem, type KnockSpec } from '../common/knock/sequence';
import { DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE, guessFloorProblem } from '../common/knock/strength';
import { MAX_ENVELOPE_BYTES } from '../common/queue/envelope';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../common/queue/timing';
import type { AdmissionLimits } from './http/admission';
import { isServerName, PROXIED_REQUESTS } from './nginx/config';
import type { LaneOptions } from './queue/lane';
import type { FirewallScope } from './firewall/ruleset';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../common/lifecycle/shutdown';
import { METRICS_SCRAPE_HOST_ENV } from '../common/metrics/scrape-address';

/**
 * Admission defaults, from the container's 256 MiB: the idle gateway (node, nginx, tcpdump)
 * takes ~50 MiB and nginx's connections up to ~100 MiB more (nginx/config.ts). A pending
 * body costs the app ~3.5 times its size until answered (raw bytes, decoded text, queued
 * envelope), so 8 MiB of them is ~28 MiB; the rest is for garbage not yet collected, of
 * which a burst of refused uploads makes plenty (their bodies still stream through the
 * app). A pending request without a body costs a few KiB. nginx passes at most
 * PROXIED_REQUESTS to the app at once, so more pending requests than that, less a margin
 * for the ones being refused, would never be reached: clients would get nginx's 429
 * instead of 503 with Retry-After.
 */
const DEFAULT_MAX_PENDING_REQUESTS = 128;
const MAX_PENDING_REQUESTS_CEILING = PROXIED_REQUESTS - 64;
const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024;

/**
 * How long a request body may take to arrive, all of it: nginx's client_body_timeout bounds
 * only the gap between reads (http/body-deadline.ts). 20 s lets a body of the largest default
 * size (1 MiB) arrive at 52 KB/s, a slow mobile uplink, while a client that trickles its body
 * holds its share of MAX_PENDING_BYTES at most that long. At most 120 s: past Node's own
 * requestTimeout (300 s) Node would answer first, without JSON.
 */
export const DEFAULT_BODY_TIMEOUT_MS = 20_000;

/**
 * A lane is checked every second and given up after two unanswered checks: a cut tunnel's
 * requests move to another broker about 2–3 s after the cut, well inside the default 10 s
 * request deadline (SSH keepalives alone take 3 × 3 s).
 */
export const DEFAULT_LANE_PING_INTERVAL_MS = 1000;
const LANE_PING_MISSES = 2;

/** Every variable the gateway reads, with its type and default. README documents them. */
const gatewayEnv = {
  GATEWAY_ID: env.str({ def: 'gw1', pattern: GATEWAY_ID, expected: 'lowercase letters, digits and -, at most 32' }),
  LOG_LEVEL: env.oneOf(['error', 'warn', 'info', 'debug'], 'info'),
  HTTP_PORT: env.port(80),
  HTTPS_PORT: env.port(443),
  // The HTTPS port clients reach, for the Location of plain HTTP's redirect: differs from
  // HTTPS_PORT when Docker publishes the container's port on another host port.
  PUBLIC_HTTPS_PORT: env.optional(env.port()),
  // The one local address nginx and the SSH server listen on; unset, every address. Host
  // networking (the Helm chart's DaemonSet) shares the node's interfaces: this keeps the
  // public ports off the ones that are not the edge (a private NIC, a cluster bridge).
  LISTEN_ADDRESS: env.optional(env.str({ pattern: /^[0-9a-fA-F:.]{2,45}$/, expected: 'an IPv4 or IPv6 address' })),
  APP_PORT: env.port(8080),
  TLS_CERT_FILE: env.absPath('/var/lib/nonstop/tls/server.crt'),
  TLS_KEY_FILE: env.absPath('/var/lib/nonstop/tls/server.key'),
  // Also the only names plain HTTP redirects for (nginx/config.ts): no wildcard.
  TLS_NAMES: env.list(strItem().refine(isServerName), { def: 'localhost', expected: 'comma-separated DNS names or IPs, no wildcard', min: 1 }),
  // No larger than half the envelope the broker takes: a body that big always fits once
  // encoded unless most of it is characters JSON escapes (then 413 at the gateway).
  MAX_BODY_BYTES: env.int({ min: 1024, max: MAX_ENVELOPE_BYTES / 2, def: DEFAULT_JSON_LIMITS.maxBytes }),
  MAX_DEPTH: env.int({ min: 1, max: 256, def: DEFAULT_JSON_LIMITS.maxDepth }),
  RATE_LIMIT_PER_SECOND: env.int({ min: 1, max: 1_000_000, def: 200 }),
  RATE_LIMIT_BURST: env.int({ min: 0, max: 1_000_000, def: 400 }),
  // As many as nginx passes to the app in all (PROXIED_REQUESTS): one API client, a backend's
  // connection pool or the benchmarks' 128-256 connections, may use them all. A lower cap
  // would not keep slow bodies from taking the admission budget either (eight 1 MiB bodies
  // fill MAX_PENDING_BYTES): BODY_TIMEOUT_MS bounds how long a slow body holds its share,
  // and streaming plus admission bound memory (test/security/slow-bodies.test.ts).
  CONNECTIONS_PER_ADDRESS: env.int({ min: 1, max: 100_000, def: 256 }),
  REQUEST_TIMEOUT_MS: env.int({ min: 100, max: 120_000, def: DEFAULT_REQUEST_TIMEOUT_MS }),
  BODY_TIMEOUT_MS: env.int({ min: 1000, max: 120_000, def: DEFAULT_BODY_TIMEOUT_MS }),
  MAX_PENDING_REQUESTS: env.int({ min: 1, max: MAX_PENDING_REQUESTS_CEILING, def: DEFAULT_MAX_PENDING_REQUESTS }),
  MAX_PENDING_BYTES: env.int({ min: 1024, max: 64 * 1024 * 1024 * 1024, def: DEFAULT_MAX_PENDING_BYTES }),
  SSH_PORT: env.port(2222),
  SSH_HOST_KEY_FILE: env.absPath('/var/lib/nonstop/ssh/ssh_host_ed25519_key'),
  SSH_AUTHORIZED_KEYS_FILE: env.absPath('/etc/nonstop/gateway/authorized_keys'),
  SSH_KEEPALIVE_INTERVAL_MS: env.int({ min: 500, max: 600_000, def: 5000 }),
  SSH_KEEPALIVE_COUNT_MAX: env.int({ min: 1, max: 100, def: 3 }),
  SSH_SETUP_TIMEOUT_MS: env.int({ min: 1000, max: 600_000, def: 15_000 }),
  SSH_MAX_AUTH_FAILURES: env.int({ min: 1, max: 1000, def: 5 }),
  SSH_AUTH_FAILURE_WINDOW_MS: env.int({ min: 1000, max: 86_400_000, def: 60_000 }),
  SSH_MAX_CONNECTIONS: env.int({ min: 1, max: 10_000, def: 64 }),
  // Unauthenticated connections (OpenSSH's MaxStartups, PerSourceMaxStartups): fewer than
  // SSH_MAX_CONNECTIONS, so clients that never authenticate cannot hold every connection.
  SSH_MAX_STARTUPS: env.int({ min: 1, max: 10_000, def: 16 }),
  SSH_MAX_STARTUPS_PER_SOURCE: env.int({ min: 1, max: 10_000, def: 4 }),
  QUEUE_PORT: env.port(6379),
  QUEUE_USERNAME: env.optional(env.str({ pattern: /^[A-Za-z0-9_-]{1,64}$/, expected: 'an ACL user name' })),
  QUEUE_PASSWORD_FILE: env.absPath('/etc/nonstop/gateway/queue.password'),
  QUEUE_COMMAND_TIMEOUT_MS: env.int({ min: 100, max: 60_000, def: 3000 }),
  QUEUE_PING_INTERVAL_MS: env.int({ min: 100, max: 60_000, def: DEFAULT_LANE_PING_INTERVAL_MS }),
  KNOCK_MODE: env.oneOf(['static', 'time'], 'static'),
  KNOCK_SEQUENCE: env.optional(env.list(intItem(1, 65535), { expected: 'comma-separated TCP ports', min: 2, max: 32 })),
  KNOCK_SECRET_FILE: env.optional(env.absPath()),
  KNOCK_LENGTH: env.int({ min: 2, max: 32, def: DEFAULT_KNOCK_LENGTH }),
  KNOCK_PORT_RANGE: env.str({ def: DEFAULT_KNOCK_PORT_RANGE, pattern: /^\d{1,5}-\d{1,5}$/, expected: 'START-END' }),
  KNOCK_PERIOD_SECONDS: env.int({ min: 5, max: 3600, def: 30 }),
  KNOCK_STEP_TIMEOUT_MS: env.int({ min: 100, max: 60_000, def: 5000 }),
  KNOCK_SEQUENCE_TIMEOUT_MS: env.int({ min: 100, max: 120_000, def: 15_000 }),
  KNOCK_WINDOW_SECONDS: env.int({ min: 1, max: 3600, def: 30 }),
  KNOCK_MAX_SOURCES: env.int({ min: 16, max: 10_000_000, def: 50_000 }),
  // A broker that knocks right spends nothing (an attempt that opens is given back), so
  // these only bind a source that keeps failing: 10 attempts, then one per 6 s.
  KNOCK_SOURCE_BUDGET: env.int({ min: 1, max: 100_000, def: 10 }),
  KNOCK_SOURCE_REFILL_SECONDS: env.int({ min: 1, max: 86_400, def: 6 }),
  KNOCK_REPLAY_FILE: env.absPath('/var/lib/nonstop/knock/replay.json'),
  KNOCK_INTERFACE: env.str({ def: 'any', pattern: /^[A-Za-z0-9_.:@-]{1,32}$/, expected: 'a network interface name or any' }),
  KNOCK_CAPTURE_BUFFER_KIB: env.int({ min: 64, max: 1 << 20, def: 8192 }),
  KNOCK_TCPDUMP: env.absPath('/usr/bin/tcpdump'),
  FIREWALL: env.oneOf(['nftables', 'off'], 'nftables'),
  // FIREWALL=off must be confirmed: without our table the kernel answers every source's SYN
  // on the SSH port (the app then closes unknocked connections before the banner), so the
  // port shows as open unless the host filters it. A lone FIREWALL=off, a typo or a copied
  // example, would otherwise drop that guarantee with only a log line.
  FIREWALL_OFF_ACKNOWLEDGED: env.bool(false),
  // Explicit, not detected: a non-root container cannot read /proc/1/ns/net to tell the
  // host's namespace from its own, and a wrong guess would either lock the host out or
  // leave the container's other ports unfiltered. Host networking needs `ports`.
  FIREWALL_SCOPE: env.oneOf(['namespace', 'ports'], 'namespace'),
  METRICS_HOST: env.str({ def: '127.0.0.1' }),
  METRICS_PORT: env.port(9464),
  // A name of the gateway on an internal network of its own with Prometheus, never the edge;
  // the firewall lets that network alone reach the metrics port (common/metrics/scrape-address.ts).
  METRICS_SCRAPE_HOST: METRICS_SCRAPE_HOST_ENV,
  METRICS_ALLOW_CIDRS: env.list(strItem(/^[0-9a-fA-F:.]+\/\d{1,3}$/), { def: '', expected: 'CIDRs' }),
  SHUTDOWN_TIMEOUT_MS: env.int({ min: 1000, max: 600_000, def: DEFAULT_SHUTDOWN_TIMEOUT_MS }),
};

export interface GatewayConfig {
  gatewayId: string;
  logLevel: string;
  http: {
    httpPort: number;
    httpsPort: number;
    publicHttpsPort: number;
    /** Where nginx and the SSH server listen; undefined: every address. */
    listenAddress: string | undefined;
    appPort: number;
    certFile: string;
    keyFile: string;
    tlsNames: string[];
    limits: JsonLimits;
    ratePerSecond: number;
    rateBurst: number;
    connectionsPerAddress: number;
    requestTimeoutMs: number;
    bodyTimeoutMs: number;
    admission: AdmissionLimits;
  };
  ssh: {
    port: number;
    hostKeyFile: string;
    authorizedKeysFile: string;
    keepaliveIntervalMs: number;
    keepaliveCountMax: number;
    setupTimeoutMs: number;
    maxAuthFailures: number;
    authFailureWindowMs: number;
    maxConnections: number;
    maxStartups: number;
    maxStartupsPerSource: number;
  };
  queue: { port: number; username: string; password: string; passwordFile: string; lane: LaneOptions };
  knock: {
    spec: KnockSpec;
    /** KNOCK_SECRET_FILE (time-based knocks): followed while the gateway runs. */
    secretFile: string | undefined;
    stepTimeoutMs: number;
    sequenceTimeoutMs: number;
    windowMs: number;
    maxSources: number;
    budget: { attempts: number; refillMs: number };
    replayFile: string;
    device: string;
    bufferKiB: number;
    tcpdump: string;
  };
  firewall: 'nftables' | 'off';
  firewallScope: FirewallScope;
  metrics: { host: string; port: number; scrapeHost: string | undefined; allowCidrs: string[] };
  shutdownTimeoutMs: number;
}

export function loadGatewayConfig(source: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const e = parseEnv(gatewayEnv, source);
  const problems: string[] = [];
  // Ports the gateway itself answers on: a knock there would also be a client's SYN.
  const ownPorts = { HTTP_PORT: e.HTTP_PORT, HTTPS_PORT: e.HTTPS_PORT, SSH_PORT: e.SSH_PORT, APP_PORT: e.APP_PORT, METRICS_PORT: e.METRICS_PORT };
  const ownIn = (inRange: (p: number) => boolean): string => Object.entries(ownPorts).filter(([, p]) => inRange(p)).map(([name, p]) => `${name} ${p}`).join(', ');
  let spec: KnockSpec | undefined;
  if (e.KNOCK_MODE === 'static') {
    if (!e.KNOCK_SEQUENCE) problems.push('KNOCK_SEQUENCE=(unset): required when KNOCK_MODE=static (e.g. 7000,8000,9000)');
    else {
      const why = staticSequenceProblem(e.KNOCK_SEQUENCE);
      if (why) problems.push(`KNOCK_SEQUENCE=${JSON.stringify(e.KNOCK_SEQUENCE.join(','))}: ${why}`);
      else spec = { mode: 'static', ports: e.KNOCK_SEQUENCE };
    }
  } else {
    const [start, end] = e.KNOCK_PORT_RANGE.split('-').map(Number) as [number, number];
    if (!(start >= 1 && end <= 65535 && end - start + 1 >= e.KNOCK_LENGTH * 2)) {
      problems.push(`KNOCK_PORT_RANGE=${JSON.stringify(e.KNOCK_PORT_RANGE)}: expected START-END within 1-65535 holding at least ${e.KNOCK_LENGTH * 2} ports`);
    } else {
      const weak = guessFloorProblem(end - start + 1, e.KNOCK_LENGTH);
      if (weak) problems.push(`KNOCK_LENGTH=${e.KNOCK_LENGTH} with KNOCK_PORT_RANGE=${JSON.stringify(e.KNOCK_PORT_RANGE)}: ${weak}`);
      const own = ownIn((p) => p >= start && p <= end);
      if (own) problems.push(`KNOCK_PORT_RANGE=${JSON.stringify(e.KNOCK_PORT_RANGE)}: overlaps the gateway's own ports (${own})`);
      if (!e.KNOCK_SECRET_FILE) {
        problems.push('KNOCK_SECRET_FILE=(unset): required when KNOCK_MODE=time');
      } else {
        const secret = Buffer.from(readSecretFile('KNOCK_SECRET_FILE', e.KNOCK_SECRET_FILE), 'utf8');
        if (secret.length < 16) problems.push(`KNOCK_SECRET_FILE=${JSON.stringify(e.KNOCK_SECRET_FILE)}: secret shorter than 16 bytes`);
        spec = { mode: 'time', secret, length: e.KNOCK_LENGTH, rangeStart: start, rangeEnd: end, periodMs: e.KNOCK_PERIOD_SECONDS * 1000 };
      }
    }
  }
  const publicPorts = [e.HTTP_PORT, e.HTTPS_PORT];
  if (publicPorts.includes(e.SSH_PORT)) problems.push(`SSH_PORT=${e.SSH_PORT}: collides with HTTP_PORT/HTTPS_PORT`);
  const ownKnocked = spec?.mode === 'static' ? ownIn((p) => spec.ports.includes(p)) : '';
  if (ownKnocked) problems.push(`KNOCK_SEQUENCE=${JSON.stringify(e.KNOCK_SEQUENCE?.join(','))}: holds the gateway's own ports (${ownKnocked})`);
  if (e.SSH_MAX_STARTUPS >= e.SSH_MAX_CONNECTIONS) {
    problems.push(`SSH_MAX_STARTUPS=${e.SSH_MAX_STARTUPS}: must be below SSH_MAX_CONNECTIONS (${e.SSH_MAX_CONNECTIONS}), or unauthenticated clients could hold every connection`);
  }
  if (e.MAX_PENDING_BYTES < e.MAX_BODY_BYTES) {
    problems.push(`MAX_PENDING_BYTES=${e.MAX_PENDING_BYTES}: below MAX_BODY_BYTES (${e.MAX_BODY_BYTES}), so a body of the largest size could never be admitted`);
  }
  if (e.FIREWALL === 'off' && !e.FIREWALL_OFF_ACKNOWLEDGED) {
    problems.push(`FIREWALL=off: refused unless FIREWALL_OFF_ACKNOWLEDGED=true confirms the host filters SSH_PORT ${e.SSH_PORT} (without nftables every source gets a SYN-ACK there)`);
  }
  if (e.FIREWALL === 'nftables' && e.FIREWALL_SCOPE === 'ports' && e.METRICS_ALLOW_CIDRS.length === 0 && !/^(127(\.\d{1,3}){3}|::1|localhost)$/.test(e.METRICS_HOST)) {
    // In `namespace` scope the policy drops the metrics port; in `ports` scope only the
    // allowed CIDRs would make the gateway filter it, so without them it would be open.
    problems.push(`METRICS_HOST=${JSON.stringify(e.METRICS_HOST)}: beyond loopback with FIREWALL_SCOPE=ports, METRICS_ALLOW_CIDRS must name who may scrape it`);
  }
  if (e.LISTEN_ADDRESS !== undefined && isIP(e.LISTEN_ADDRESS) === 0) problems.push(`LISTEN_ADDRESS=${JSON.stringify(e.LISTEN_ADDRESS)}: not an IPv4 or IPv6 address`);
  if (problems.length > 0 || !spec) throw new ConfigError(problems);
  return {
    gatewayId: e.GATEWAY_ID,
    logLevel: e.LOG_LEVEL,
    http: {
      httpPort: e.HTTP_PORT,
      httpsPort: e.HTTPS_PORT,
      publicHttpsPort: e.PUBLIC_HTTPS_PORT ?? e.HTTPS_PORT,
      listenAddress: e.LISTEN_ADDRESS,
      appPort: e.APP_PORT,
      certFile: e.TLS_CERT_FILE,
      keyFile: e.TLS_KEY_FILE,
      tlsNames: e.TLS_NAMES,
      limits: { ...DEFAULT_JSON_LIMITS, maxBytes: e.MAX_BODY_BYTES, maxDepth: e.MAX_DEPTH },
      ratePerSecond: e.RATE_LIMIT_PER_SECOND,
      rateBurst: e.RATE_LIMIT_BURST,
      connectionsPerAddress: e.CONNECTIONS_PER_ADDRESS,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      bodyTimeoutMs: e.BODY_TIMEOUT_MS,
      admission: { maxPendingRequests: e.MAX_PENDING_REQUESTS, maxPendingBytes: e.MAX_PENDING_BYTES },
    },
    ssh: {
      port: e.SSH_PORT,
      hostKeyFile: e.SSH_HOST_KEY_FILE,
      authorizedKeysFile: e.SSH_AUTHORIZED_KEYS_FILE,
      keepaliveIntervalMs: e.SSH_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: e.SSH_KEEPALIVE_COUNT_MAX,
      setupTimeoutMs: e.SSH_SETUP_TIMEOUT_MS,
      maxAuthFailures: e.SSH_MAX_AUTH_FAILURES,
      authFailureWindowMs: e.SSH_AUTH_FAILURE_WINDOW_MS,
      maxConnections: e.SSH_MAX_CONNECTIONS,
      maxStartups: e.SSH_MAX_STARTUPS,
      maxStartupsPerSource: e.SSH_MAX_STARTUPS_PER_SOURCE,
    },
    queue: {
      port: e.QUEUE_PORT,
      username: e.QUEUE_USERNAME ?? `gateway-${e.GATEWAY_ID}`,
      password: readSecretFile('QUEUE_PASSWORD_FILE', e.QUEUE_PASSWORD_FILE),
      passwordFile: e.QUEUE_PASSWORD_FILE,
      lane: { commandTimeoutMs: e.QUEUE_COMMAND_TIMEOUT_MS, pingIntervalMs: e.QUEUE_PING_INTERVAL_MS, pingMisses: LANE_PING_MISSES },
    },
    knock: {
      spec,
      secretFile: e.KNOCK_SECRET_FILE,
      stepTimeoutMs: e.KNOCK_STEP_TIMEOUT_MS,
      sequenceTimeoutMs: e.KNOCK_SEQUENCE_TIMEOUT_MS,
      windowMs: e.KNOCK_WINDOW_SECONDS * 1000,
      maxSources: e.KNOCK_MAX_SOURCES,
      budget: { attempts: e.KNOCK_SOURCE_BUDGET, refillMs: e.KNOCK_SOURCE_REFILL_SECONDS * 1000 },
      replayFile: e.KNOCK_REPLAY_FILE,
      device: e.KNOCK_INTERFACE,
      bufferKiB: e.KNOCK_CAPTURE_BUFFER_KIB,
      tcpdump: e.KNOCK_TCPDUMP,
    },
    firewall: e.FIREWALL,
    firewallScope: e.FIREWALL_SCOPE,
    metrics: { host: e.METRICS_HOST, port: e.METRICS_PORT, scrapeHost: e.METRICS_SCRAPE_HOST, allowCidrs: e.METRICS_ALLOW_CIDRS },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
