import { randomBytes } from 'node:crypto';
import { closeServer, runService } from '../common/lifecycle/entry';
import { componentLogger, type Logger } from '../common/log/logger';
import type { Lifecycle } from '../common/lifecycle/shutdown';
import { followKeyDates, keyDatesFile } from '../common/metrics/key-expiry';
import { resolveScrapeAddress } from '../common/metrics/scrape-address';
import { createRegistry, startMetricsServer, type HealthReport } from '../common/metrics/server';
import { loadBrokerConfig, type BrokerConfig } from './config';
import { CoreClient } from './core-client/client';
import { InsertBatcher } from './core-client/insert-batcher';
import { CoreTlsFiles } from './core-client/tls-files';
import { GatewaySet, redisLimitsFor, redisUserOf } from './gateways/gateway-set';
import { GatewaysReloader } from './gateways/reloader';
import { BrokerSshKeys } from './tunnel/ssh-keys';
import { brokerMetrics } from './metrics';
import { createPipeline } from './pipeline';
import { QueueConsumer } from './queue/consumer';
import { RedisGatewayUsers } from './redis/gateway-users';
import { startRedis, type BrokerRedisConf } from './redis/server';
import { SchemaRegistry } from './validate/schemas';
import { RequestValidator } from './validate/validator';

const RUN_DIR = process.env.RUN_DIR ?? '/run/nonstop';

async function start(config: BrokerConfig, log: Logger, lifecycle: Lifecycle): Promise<void> {
  const registry = createRegistry('broker');
  const metrics = brokerMetrics(registry);
  lifecycle.onClose('key-dates', followKeyDates(keyDatesFile(config.gatewaysFile.path), metrics.keyExpiry, log));
  const schemas = SchemaRegistry.load(config.schemaDir);
  const validator = new RequestValidator(schemas, config.limits);

  // The broker's own Redis passwords live only in this process's memory.
  const brokerPassword = randomBytes(32).toString('base64url');
  const redisConf: BrokerRedisConf = {
    runDir: RUN_DIR,
    conf: { port: config.redis.port, maxMemoryBytes: config.redis.maxMemoryBytes, gateways: config.gateways.map(redisUserOf), limits: redisLimitsFor(config, config.gateways.length) },
    brokerPassword,
    adminPassword: randomBytes(32).toString('base64url'),
  };
  const redis = await startRedis({ ...redisConf, binary: config.redis.binary, log: componentLogger(log, 'redis') });
  redis.on('exited', () => metrics.redisRestarts.set(redis.restarts + 1));
  lifecycle.onClose('redis', () => redis.stop());

  const core = new CoreClient(config.core, metrics.coreRetries);
  lifecycle.onClose('core-client', () => core.close());
  // Rotated certificates and CA bundles apply without a restart; the gauges report the texts in effect.
  const coreTls = new CoreTlsFiles(config.coreFiles, config.core, (tls) => core.useTls(tls), componentLogger(log, 'core-tls'));
  metrics.certificateExpiry.track('client', () => coreTls.current().cert, log);
  metrics.certificateExpiry.track('ca', () => coreTls.current().ca, log);
  coreTls.start();
  lifecycle.onClose('core-tls', () => coreTls.stop());
  const inserts = new InsertBatcher(core, config.coreBatch, metrics.coreBatchRecords);

  // Closers run last-registered first. Shutdown must stop taking work and finish it —
  // every reply published — before the tunnels its replies travel through close; requests
  // still queued then are re-sent by their gateway on another broker's lane. So the
  // tunnels' closer is registered before the consumer's, to run after it.
  const consumer = new QueueConsumer(
    {
      redis: { host: '127.0.0.1', port: config.redis.port, username: 'broker', password: brokerPassword },
      gatewayIds: config.gateways.map((g) => g.id),
      consumerName: `${config.brokerId}-${process.pid}`,
      concurrency: config.queue.concurrency,
      maxBudgetMs: config.queue.maxBudgetMs,
      claimIdleMs: config.queue.claimIdleMs,
      claimIntervalMs: config.queue.claimIntervalMs,
    },
    createPipeline(validator, { insert: (call, record) => inserts.insert(call, record), read: (call, id) => core.read(call, id), list: (call, query) => core.list(call, query), erase: (call, id) => core.erase(call, id) }, metrics, componentLogger(log, 'pipeline')),
    metrics,
    componentLogger(log, 'queue'),
  );
  // Followed: a broker key rotation moves the tunnels to the new key without a restart.
  const sshKeys = new BrokerSshKeys(config.ssh.keyFile, config.ssh.privateKey, componentLogger(log, 'tunnel'), () => gateways.keysChanged());
  const gateways = new GatewaySet(config, { users: new RedisGatewayUsers(redisConf), consumer, metrics, tunnelLog: componentLogger(log, 'tunnel'), sshKeys: () => sshKeys.current() });
  lifecycle.onClose('ssh-keys', sshKeys.start(config.gatewaysFile.pollMs));
  lifecycle.onClose('tunnels', () => gateways.stop());
  await consumer.start();
  lifecycle.onClose('consumer', () => consumer.stop());
  gateways.start();

  const health = (): HealthReport => ({
    ok: redis.running && !lifecycle.isClosing && consumer.stalledMs < config.queue.maxBudgetMs,
    checks: {
      redis: redis.running ? 'running' : 'down',
      redisRestarts: redis.restarts,
      inflight: consumer.busy,
      // A consumer that has not moved the queue for longer than any request may take is stuck.
      consumer: consumer.stalledMs < config.queue.maxBudgetMs ? 'moving' : 'stuck',
      tunnels: gateways.tunnelStates(),
    },
  });
  const metricsServer = await startMetricsServer({ host: config.metrics.host, port: config.metrics.port, registry, log, health });
  lifecycle.onClose('metrics', () => closeServer(metricsServer));
  if (config.metrics.scrapeHost !== undefined) {
    // Its private-network address only: the broker is on the edge network too.
    const scrape = await resolveScrapeAddress('METRICS_SCRAPE_HOST', config.metrics.scrapeHost);
    const scrapeServer = await startMetricsServer({ host: scrape.address, port: config.metrics.port, registry, log, health });
    lifecycle.onClose('metrics-scrape', () => closeServer(scrapeServer));
  }
  // Last registered, first closed: no new gateway list is applied while the broker stops.
  const reloader = new GatewaysReloader(config.gatewaysFile, gateways, metrics, componentLogger(log, 'gateways'));
  reloader.start();
  lifecycle.onClose('gateways-file', () => reloader.stop());
  log.info('broker ready', { gateways: config.gateways.map((g) => g.id), collections: schemas.collections });
}

runService('broker', () => loadBrokerConfig(), start);
