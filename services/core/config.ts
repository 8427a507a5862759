import { env, parseEnv } from '../common/config/env';
import { DEFAULT_JSON_LIMITS } from '../common/json/limits';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../common/lifecycle/shutdown';
import { METRICS_SCRAPE_HOST_ENV } from '../common/metrics/scrape-address';

/** The most time a caller may grant one request (x-request-budget-ms), in milliseconds. */
export const MAX_REQUEST_BUDGET_MS = 600_000;
/** The budget of a request that does not say its own: the gateway's default deadline. */
export const DEFAULT_REQUEST_BUDGET_MS = 10_000;

const coreEnv = {
  LOG_LEVEL: env.oneOf(['error', 'warn', 'info', 'debug'], 'info'),
  CORE_HOST: env.str({ def: '0.0.0.0' }),
  CORE_PORT: env.port(8443),
  TLS_CERT_FILE: env.absPath('/etc/nonstop/core/server.crt'),
  TLS_KEY_FILE: env.absPath('/etc/nonstop/core/server.key'),
  CLIENT_CA_FILE: env.absPath('/etc/nonstop/core/ca.crt'),
  // The CA's revocation list and the brokers core knows; keygen writes both, core re-reads them on change.
  CLIENT_CRL_FILE: env.absPath('/etc/nonstop/core/ca.crl'),
  CLIENT_NAMES_FILE: env.absPath('/etc/nonstop/core/brokers'),
  // The key-encryption keys for records at rest: with the secrets keygen writes, never on the data volume.
  CORE_DATA_KEYS_FILE: env.absPath('/etc/nonstop/core/data-keys.json'),
  DB_ENGINE: env.oneOf(['mongodb', 'ferretdb'], (process.env.NONSTOP_DEFAULT_DB_ENGINE as 'mongodb' | 'ferretdb' | undefined) ?? 'mongodb'),
  DB_PORT: env.port(27017),
  DATA_DIR: env.absPath('/var/lib/nonstop/data'),
  MONGOD_BINARY: env.absPath('/usr/bin/mongod'),
  FERRETDB_BINARY: env.absPath('/usr/local/bin/ferretdb'),
  DB_START_TIMEOUT_MS: env.int({ min: 1000, max: 600_000, def: 60_000 }),
  // The container's tmpfs, shared by the service and nonstop-admin: the token generation file.
  RUN_DIR: env.absPath('/run/nonstop'),
  MAX_BODY_BYTES: env.int({ min: 1024, max: 16 * 1024 * 1024, def: DEFAULT_JSON_LIMITS.maxBytes + 4096 }),
  REQUEST_BUDGET_MS: env.int({ min: 1, max: MAX_REQUEST_BUDGET_MS, def: DEFAULT_REQUEST_BUDGET_MS }),
  METRICS_HOST: env.str({ def: '127.0.0.1' }),
  METRICS_PORT: env.port(9464),
  // A name of core on the private network, where Prometheus scrapes it (common/metrics/scrape-address.ts).
  METRICS_SCRAPE_HOST: METRICS_SCRAPE_HOST_ENV,
  SHUTDOWN_TIMEOUT_MS: env.int({ min: 1000, max: 600_000, def: DEFAULT_SHUTDOWN_TIMEOUT_MS }),
};

export type DbEngineName = 'mongodb' | 'ferretdb';

export interface DbConfig {
  engine: DbEngineName;
  port: number;
  dataDir: string;
  mongodBinary: string;
  ferretdbBinary: string;
  startTimeoutMs: number;
}

export interface CoreConfig {
  logLevel: string;
  http: { host: string; port: number; certFile: string; keyFile: string; clientCaFile: string; clientCrlFile: string; clientNamesFile: string; maxBodyBytes: number; defaultBudgetMs: number };
  db: DbConfig;
  /** The key file records are encrypted with (storage/data-keys.ts). */
  dataKeysFile: string;
  /** Where the token generation file lives (auth/token-generation.ts). */
  runDir: string;
  metrics: { host: string; port: number; scrapeHost: string | undefined };
  shutdownTimeoutMs: number;
}

export function loadDbConfig(source: NodeJS.ProcessEnv = process.env): DbConfig {
  const e = parseEnv(
    { DB_ENGINE: coreEnv.DB_ENGINE, DB_PORT: coreEnv.DB_PORT, DATA_DIR: coreEnv.DATA_DIR, MONGOD_BINARY: coreEnv.MONGOD_BINARY, FERRETDB_BINARY: coreEnv.FERRETDB_BINARY, DB_START_TIMEOUT_MS: coreEnv.DB_START_TIMEOUT_MS },
    source,
  );
  return { engine: e.DB_ENGINE, port: e.DB_PORT, dataDir: e.DATA_DIR, mongodBinary: e.MONGOD_BINARY, ferretdbBinary: e.FERRETDB_BINARY, startTimeoutMs: e.DB_START_TIMEOUT_MS };
}

/** CORE_DATA_KEYS_FILE alone: what nonstop-admin's key commands need besides the database. */
export function loadDataKeysFile(source: NodeJS.ProcessEnv = process.env): string {
  return parseEnv({ CORE_DATA_KEYS_FILE: coreEnv.CORE_DATA_KEYS_FILE }, source).CORE_DATA_KEYS_FILE;
}

/** RUN_DIR alone: what nonstop-admin needs besides the database to tell the service of a change. */
export function loadRunDir(source: NodeJS.ProcessEnv = process.env): string {
  return parseEnv({ RUN_DIR: coreEnv.RUN_DIR }, source).RUN_DIR;
}

export function loadCoreConfig(source: NodeJS.ProcessEnv = process.env): CoreConfig {
  const e = parseEnv(coreEnv, source);
  return {
    logLevel: e.LOG_LEVEL,
    http: { host: e.CORE_HOST, port: e.CORE_PORT, certFile: e.TLS_CERT_FILE, keyFile: e.TLS_KEY_FILE, clientCaFile: e.CLIENT_CA_FILE, clientCrlFile: e.CLIENT_CRL_FILE, clientNamesFile: e.CLIENT_NAMES_FILE, maxBodyBytes: e.MAX_BODY_BYTES, defaultBudgetMs: e.REQUEST_BUDGET_MS },
    db: loadDbConfig(source),
    dataKeysFile: e.CORE_DATA_KEYS_FILE,
    runDir: e.RUN_DIR,
    metrics: { host: e.METRICS_HOST, port: e.METRICS_PORT, scrapeHost: e.METRICS_SCRAPE_HOST },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
