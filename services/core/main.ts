import type { Db } from 'mongodb';
import { closeServer, runService } from '../common/lifecycle/entry';
import { componentLogger, type Logger } from '../common/log/logger';
import type { Lifecycle } from '../common/lifecycle/shutdown';
import { followKeyDates, keyDatesFile } from '../common/metrics/key-expiry';
import { resolveScrapeAddress } from '../common/metrics/scrape-address';
import { createRegistry, startMetricsServer, type HealthReport } from '../common/metrics/server';
import { TokenGeneration, tokenGenerationPath } from './auth/token-generation';
import { TokenStore } from './auth/tokens';
import { loadCoreConfig, type CoreConfig } from './config';
import { coreMetrics } from './metrics';
import { startDatabase } from './db/database';
import { DB_NAME, ferretdbSqliteFile } from './db/engine';
import { SqliteWalPurge } from './db/sqlite-wal-purge';
import { createCoreApp } from './http/app';
import { ClientIdentity } from './http/client-identity';
import { createCoreHttpsServer } from './http/server';
import { ServerCertificate } from './http/server-certificate';
import { DATA_KEYS_POLL_MS, DataKeyRing } from './storage/data-keys';
import { KeyRotation } from './storage/key-rotation';
import { RecordStore } from './storage/records';

const HEALTH_PING_TIMEOUT_MS = 2000;

/**
 * The service's token store, with its grant cache when the generation file can be made:
 * without it nonstop-admin could not reach the cache, so a token would be read on every
 * request instead (correct, one database round trip slower).
 */
function tokenStore(config: CoreConfig, log: Logger, db: Db): TokenStore {
  const generation = new TokenGeneration(tokenGenerationPath(config.runDir));
  try {
    generation.create();
  } catch (err) {
    log.warn('token grant cache off: the generation file cannot be created, every request reads its token from the database', { path: generation.path, err: (err as Error).message });
    return new TokenStore(db);
  }
  log.info('token grant cache on', { path: generation.path });
  return new TokenStore(db, { generation });
}

async function start(config: CoreConfig, log: Logger, lifecycle: Lifecycle): Promise<void> {
  const keysLog = componentLogger(log, 'data-keys');
  const dataKeys = DataKeyRing.load(config.dataKeysFile, keysLog);
  const clients = await ClientIdentity.load({ caFile: config.http.clientCaFile, crlFile: config.http.clientCrlFile, namesFile: config.http.clientNamesFile }, componentLogger(log, 'clients'));
  // Followed like the client identity files: a rotated pair is served on the next handshakes.
  const tls = ServerCertificate.load({ certFile: config.http.certFile, keyFile: config.http.keyFile }, componentLogger(log, 'server-cert'));
  const registry = createRegistry('core');
  const metrics = coreMetrics(registry);
  metrics.certificateExpiry.track('server', () => tls.current().cert, log);
  // ClientIdentity owns the CA and the CRL and re-reads them when they change: the gauges
  // read the texts in effect through it, at each scrape.
  metrics.certificateExpiry.track('ca', () => clients.tlsOptions().ca, log);
  metrics.crlExpiry.track('ca', () => clients.tlsOptions().crl, log);
  lifecycle.onClose('key-dates', followKeyDates(keyDatesFile(config.dataKeysFile), metrics.keyExpiry, log));
  const { child, client } = await startDatabase(config.db, componentLogger(log, 'db'));
  lifecycle.onClose('database', () => child.stop());
  lifecycle.onClose('db-client', () => client.close());
  const db = client.db(DB_NAME);
  // FerretDB: an erase returns once SQLite's WAL holds no copy of the record. MongoDB has no
  // such step (WiredTiger frees the space for reuse; see SECURITY.md on erasure).
  const erasePurge = config.db.engine === 'ferretdb' ? new SqliteWalPurge(ferretdbSqliteFile(config.db), componentLogger(log, 'erase-purge')) : undefined;
  const records = new RecordStore(db, dataKeys, erasePurge);
  await records.init();
  if (erasePurge) {
    lifecycle.onClose('erase-purge', () => erasePurge.stop());
    // A crash between an erase and its purge left the record's copy in the WAL: purge now.
    erasePurge.purge().then(
      () => log.info('write-ahead log purged at start'),
      (err: unknown) => log.warn('write-ahead log purge at start stopped', { err: (err as Error).message }),
    );
  }
  // nonstop-admin keys rotate waits for this before rewrapping: after it, no new record is
  // wrapped under the previous key.
  const stopKeyWatch = new KeyRotation(db).follow(dataKeys, DATA_KEYS_POLL_MS, keysLog);
  lifecycle.onClose('data-keys', () => stopKeyWatch());
  const app = createCoreApp({ clients, records, tokens: tokenStore(config, log, db), maxBodyBytes: config.http.maxBodyBytes, defaultBudgetMs: config.http.defaultBudgetMs, log: componentLogger(log, 'http') });

  // Only clients with a certificate from the deployment CA, not revoked, complete the handshake.
  const { server, stopWatching } = createCoreHttpsServer(tls, clients, app, log);
  lifecycle.onClose('client-identity', () => stopWatching());
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host, () => resolve());
  });
  lifecycle.onClose('https', () => closeServer(server));

  const health = async (): Promise<HealthReport> => {
    let dbOk = false;
    try {
      // Bounded: a stalled database must read as down, not hang the health check.
      await db.command({ ping: 1 }, { signal: AbortSignal.timeout(HEALTH_PING_TIMEOUT_MS) });
      dbOk = true;
    } catch {
      dbOk = false;
    }
    return { ok: dbOk && child.running && !lifecycle.isClosing, checks: { engine: config.db.engine, database: dbOk ? 'up' : 'down', dbRestarts: child.restarts } };
  };
  const metricsServer = await startMetricsServer({ host: config.metrics.host, port: config.metrics.port, registry, log, health });
  lifecycle.onClose('metrics', () => closeServer(metricsServer));
  if (config.metrics.scrapeHost !== undefined) {
    const scrape = await resolveScrapeAddress('METRICS_SCRAPE_HOST', config.metrics.scrapeHost);
    const scrapeServer = await startMetricsServer({ host: scrape.address, port: config.metrics.port, registry, log, health });
    lifecycle.onClose('metrics-scrape', () => closeServer(scrapeServer));
  }
  log.info('core ready', { port: config.http.port, engine: config.db.engine });
}

runService('core', () => loadCoreConfig(), start);
