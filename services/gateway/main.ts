import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { ConfigError } from '../common/errors/config-error';
import { closeServer, runService } from '../common/lifecycle/entry';
import { componentLogger, type Logger } from '../common/log/logger';
import type { Lifecycle } from '../common/lifecycle/shutdown';
import { ChildSupervisor } from '../common/lifecycle/supervisor';
import { followKeyDates, keyDatesFile } from '../common/metrics/key-expiry';
import { resolveScrapeAddress } from '../common/metrics/scrape-address';
import { createRegistry, startMetricsServer, type HealthReport } from '../common/metrics/server';
import { generateSshKeyPair } from '../common/pki/ssh-keys';
import { fingerprintOfAnyKey } from '../common/pki/ssh-parse';
import { writeIfAbsent } from '../common/pki/files';
import { loadGatewayConfig, type GatewayConfig } from './config';
import { readConfigFile } from '../common/config/env';
import { Firewall } from './firewall/nftables';
import { knockPortRanges } from './firewall/ruleset';
import { createApp } from './http/app';
import { AdmissionControl } from './http/admission';
import { NoFirewall } from './firewall/no-firewall';
import { KnockDoor } from './knock/door';
import { admissionMetrics, exportBrokerKeyExpiry, gatewayMetrics } from './metrics';
import { renderNginxConf } from './nginx/config';
import { checkPortsBindable, ipv6Enabled } from './nginx/host-checks';
import { followKnockSecrets } from './knock/secret-files';
import { QueuePasswords } from './queue/passwords';
import { Dispatcher } from './queue/dispatcher';
import { sameRequest } from './queue/same-request';
import { parseAuthorizedKeys, type AuthorizedKey } from './ssh/authorized-keys';
import { followAuthorizedKeys } from './ssh/authorized-keys-file';
import { followHostKey } from './ssh/host-key-file';
import { FailureLimiter } from './ssh/failure-limiter';
import { GatewaySshServer } from './ssh/server';
import { ensureServerCertificate } from './tls/certificate';
import { ServedPair, servedPairPath } from './tls/served-pair';
import { TlsFileError } from '../common/pki/tls-files';

const RUN_DIR = process.env.RUN_DIR ?? '/run/nonstop';

function loadHostKey(path: string, log: Logger): string {
  if (!existsSync(path)) {
    const pair = generateSshKeyPair('nonstop-gateway');
    writeIfAbsent(path, pair.privateKey, 0o600);
    log.warn('generated an SSH host key; pin its fingerprint in each broker', { fingerprint: fingerprintOfAnyKey(pair.publicKey) });
  }
  const key = readFileSync(path, 'utf8');
  log.info('ssh host key', { fingerprint: fingerprintOfAnyKey(key) });
  return key;
}

async function start(config: GatewayConfig, log: Logger, lifecycle: Lifecycle): Promise<void> {
  const registry = createRegistry('gateway');
  const metrics = gatewayMetrics(registry);

  checkPortsBindable([
    { name: 'HTTP_PORT', port: config.http.httpPort },
    { name: 'HTTPS_PORT', port: config.http.httpsPort },
  ]);
  const tlsLog = componentLogger(log, 'tls');
  const serverCertPem = await ensureServerCertificate(config.http.certFile, config.http.keyFile, config.http.tlsNames, tlsLog);
  // What nginx serves: a checked copy of the pair, followed while running (tls/served-pair.ts).
  let servedPair: ServedPair;
  try {
    servedPair = new ServedPair(
      { certFile: config.http.certFile, keyFile: config.http.keyFile, servedFile: servedPairPath(join(RUN_DIR, 'nginx')), reload: () => nginx.signal('SIGHUP'), log: tlsLog },
      serverCertPem,
      readFileSync(config.http.keyFile, 'utf8'),
    );
  } catch (err) {
    if (!(err instanceof TlsFileError)) throw err;
    throw new ConfigError([`TLS_CERT_FILE=${JSON.stringify(config.http.certFile)}, TLS_KEY_FILE=${JSON.stringify(config.http.keyFile)}: ${err.message}`]);
  }
  // The expiry of the certificate nginx serves, a renewal's once it is reloaded.
  metrics.certificateExpiry.track('server', () => servedPair.certPem, tlsLog);
  lifecycle.onClose('key-dates', followKeyDates(keyDatesFile(config.ssh.authorizedKeysFile), metrics.keyExpiry, log));
  const hostKey = loadHostKey(config.ssh.hostKeyFile, componentLogger(log, 'ssh'));
  let authorizedKeys;
  try {
    authorizedKeys = parseAuthorizedKeys(readConfigFile('SSH_AUTHORIZED_KEYS_FILE', config.ssh.authorizedKeysFile));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([`SSH_AUTHORIZED_KEYS_FILE=${JSON.stringify(config.ssh.authorizedKeysFile)}: ${(err as Error).message}`]);
  }
  if (authorizedKeys.length === 0) {
    throw new ConfigError([`SSH_AUTHORIZED_KEYS_FILE=${JSON.stringify(config.ssh.authorizedKeysFile)}: holds no broker key`]);
  }
  exportBrokerKeyExpiry(metrics.brokerKeyExpiry, authorizedKeys);
  // Resolved before the firewall loads: its network is the one source let reach the metrics port.
  const scrape = config.metrics.scrapeHost === undefined ? undefined : await resolveScrapeAddress('METRICS_SCRAPE_HOST', config.metrics.scrapeHost);
  const metricsSources = [...config.metrics.allowCidrs, ...(scrape ? [scrape.subnet] : [])];

  // 1. Firewall first: until it is loaded the SSH port must not answer at all.
  const fwLog = componentLogger(log, 'firewall');
  const firewall = new Firewall({
    scope: config.firewallScope,
    publicPorts: [config.http.httpPort, config.http.httpsPort],
    sshPort: config.ssh.port,
    knockPorts: knockPortRanges(config.knock.spec),
    maxOpenWindows: 65_536,
    metrics: metricsSources.length > 0 ? { port: config.metrics.port, allowCidrs: metricsSources } : undefined,
  });
  if (config.firewall === 'nftables') {
    await firewall.load();
    fwLog.info('nftables table loaded', { sshPort: config.ssh.port, scope: config.firewallScope });
    lifecycle.onClose('firewall', () => firewall.remove());
  } else {
    fwLog.warn('FIREWALL=off: the SSH port is guarded by the app only; filter it on the host');
  }

  // 2. The door: knocks → a window for the knocking source, and the SSH server's admit rule.
  const door = new KnockDoor(
    { ...config.knock, capture: { tcpdump: config.knock.tcpdump, device: config.knock.device, bufferKiB: config.knock.bufferKiB }, maxOpenWindows: 65_536 },
    { firewall: config.firewall === 'nftables' ? firewall : new NoFirewall(), metrics, log: componentLogger(log, 'knock') },
  );
  lifecycle.onClose('door', () => door.stop());
  await door.start();
  // Followed: `nonstop-keygen rotate knock-secret` changes the secret while the gateway runs.
  const knockSpec = config.knock.spec;
  if (knockSpec.mode === 'time' && config.knock.secretFile) {
    const stopFollowing = followKnockSecrets(config.knock.secretFile, knockSpec, (spec) => door.setSpec(spec), componentLogger(log, 'knock'));
    lifecycle.onClose('knock-secret', stopFollowing);
  }

  // 3. Queue dispatch over tunnels, and the SSH server that creates them.
  // Followed: `nonstop-keygen rotate queue-password` changes them while the gateway runs.
  const queuePasswords = new QueuePasswords(config.queue.passwordFile, [config.queue.password], componentLogger(log, 'queue'));
  queuePasswords.start();
  lifecycle.onClose('queue-passwords', () => queuePasswords.stop());
  const dispatcher = new Dispatcher(config.gatewayId, { username: config.queue.username, passwords: queuePasswords }, config.queue.lane, sameRequest, metrics, componentLogger(log, 'queue'));
  lifecycle.onClose('dispatcher', () => dispatcher.close());
  const ssh = new GatewaySshServer(
    {
      hostKey,
      authorizedKeys,
      queuePort: config.queue.port,
      admit: (address) => door.admit(address),
      limiter: new FailureLimiter({ maxFailures: config.ssh.maxAuthFailures, windowMs: config.ssh.authFailureWindowMs, maxTracked: 100_000 }),
      keepaliveIntervalMs: config.ssh.keepaliveIntervalMs,
      keepaliveCountMax: config.ssh.keepaliveCountMax,
      setupTimeoutMs: config.ssh.setupTimeoutMs,
      maxConnections: config.ssh.maxConnections,
      maxStartups: config.ssh.maxStartups,
      maxStartupsPerSource: config.ssh.maxStartupsPerSource,
    },
    metrics,
    componentLogger(log, 'ssh'),
  );
  ssh.on('tunnel', (t) => dispatcher.addTunnel(t));
  await ssh.listen(config.ssh.port, config.http.listenAddress ?? (ipv6Enabled() ? '::' : '0.0.0.0'));
  lifecycle.onClose('ssh', () => ssh.close());
  // Followed while running: a host key rotation's new key goes to new connections without a restart.
  lifecycle.onClose('host-key', followHostKey(config.ssh.hostKeyFile, hostKey, (key) => ssh.setHostKey(key), componentLogger(log, 'ssh')));
  // Followed while running: a broker keygen adds or revokes is let in or cut off without a restart.
  const followKeys = (keys: readonly AuthorizedKey[]): void => {
    ssh.setAuthorizedKeys(keys);
    exportBrokerKeyExpiry(metrics.brokerKeyExpiry, keys);
  };
  lifecycle.onClose('authorized-keys', followAuthorizedKeys(config.ssh.authorizedKeysFile, followKeys, componentLogger(log, 'ssh')));

  // 4. The API app on loopback, behind nginx.
  const admission = new AdmissionControl(config.http.admission);
  admissionMetrics(registry, admission, config.http.admission);
  const app = createApp({
    gatewayId: config.gatewayId,
    limits: config.http.limits,
    requestTimeoutMs: config.http.requestTimeoutMs,
    bodyTimeoutMs: config.http.bodyTimeoutMs,
    submit: (request, timeoutMs) => dispatcher.submit(request, timeoutMs),
    admission,
    metrics,
    log: componentLogger(log, 'http'),
  });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.http.appPort, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 65_000;
  lifecycle.onClose('http', () => closeServer(server));

  // 5. nginx, supervised.
  const nginxDir = join(RUN_DIR, 'nginx');
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(nginxDir, sub), { recursive: true, mode: 0o700 });
  const nginxConf = join(nginxDir, 'nginx.conf');
  writeFileSync(
    nginxConf,
    renderNginxConf({
      runDir: nginxDir,
      accessLog: '/dev/stdout',
      httpPort: config.http.httpPort,
      httpsPort: config.http.httpsPort,
      serverNames: config.http.tlsNames,
      publicHttpsPort: config.http.publicHttpsPort,
      ipv6: ipv6Enabled(),
      listenAddress: config.http.listenAddress,
      appPort: config.http.appPort,
      // One file holds both: replaced by one rename, nginx never reads a mismatched pair.
      certFile: servedPairPath(nginxDir),
      keyFile: servedPairPath(nginxDir),
      maxBodyBytes: config.http.limits.maxBytes,
      ratePerSecond: config.http.ratePerSecond,
      rateBurst: config.http.rateBurst,
      connectionsPerAddress: config.http.connectionsPerAddress,
      requestTimeoutMs: config.http.requestTimeoutMs,
    }),
    { mode: 0o600 },
  );
  const nginx = new ChildSupervisor(
    // SIGQUIT is nginx's graceful stop: finish requests in flight, then exit.
    { name: 'nginx', command: process.env.NGINX_BINARY ?? '/usr/sbin/nginx', args: ['-c', nginxConf, '-e', 'stderr'], stopSignal: 'SIGQUIT', stopTimeoutMs: config.http.requestTimeoutMs + 2000, stdout: 'inherit' },
    componentLogger(log, 'nginx'),
  );
  nginx.start();
  lifecycle.onClose('nginx', () => nginx.stop());
  servedPair.start();
  lifecycle.onClose('tls-pair', () => servedPair.stop());

  const health = (): HealthReport => {
    const knock = door.stats();
    return {
      ok: nginx.running && knock.capturing && !lifecycle.isClosing,
      checks: {
        nginx: nginx.running ? 'running' : 'down',
        nginxRestarts: nginx.restarts,
        firewall: config.firewall,
        sniffer: knock.capturing ? 'capturing' : 'down',
        snifferRestarts: knock.captureRestarts,
        tunnelsOpen: dispatcher.openLanes,
        tunnelsReady: dispatcher.readyLanes,
      },
    };
  };
  const metricsServer = await startMetricsServer({ host: config.metrics.host, port: config.metrics.port, registry, log, health });
  lifecycle.onClose('metrics', () => closeServer(metricsServer));
  if (scrape) {
    const scrapeServer = await startMetricsServer({ host: scrape.address, port: config.metrics.port, registry, log, health });
    lifecycle.onClose('metrics-scrape', () => closeServer(scrapeServer));
  }
  // Runs first on shutdown: stop taking work (new requests get 503 shutting_down, not
  // stored) while nginx finishes the requests it has and their replies still come back
  // through the tunnels, which close only after nginx and the app have.
  lifecycle.onClose('drain', () => dispatcher.drain());
  log.info('gateway ready', { gatewayId: config.gatewayId, sshPort: config.ssh.port, knockMode: config.knock.spec.mode });
}

runService('gateway', () => loadGatewayConfig(), start);
