import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log/logger';

export interface HealthReport {
  ok: boolean;
  /** Per-part detail for operators; never secrets or payloads. */
  checks: Record<string, unknown>;
}

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * The internal HTTP listener of every service: `/metrics` (Prometheus text) and `/healthz`
 * (200 when healthy, 503 otherwise, JSON either way). Docker's HEALTHCHECK probes `/healthz`.
 */
export async function startMetricsServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  health: () => HealthReport | Promise<HealthReport>;
  log: Logger;
}): Promise<Server> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET') return reply(405, 'application/json', '{"error":{"code":"method_not_allowed","message":"GET only"}}');
    if (url === '/metrics') {
      opts.registry.metrics().then(
        (text) => reply(200, opts.registry.contentType, text),
        () => reply(500, 'application/json', '{"error":{"code":"internal","message":"metrics failed"}}'),
      );
      return;
    }
    if (url === '/healthz') {
      Promise.resolve()
        .then(opts.health)
        .then(
          (report) => reply(report.ok ? 200 : 503, 'application/json', JSON.stringify(report)),
          () => reply(503, 'application/json', '{"ok":false,"checks":{}}'),
        );
      return;
    }
    reply(404, 'application/json', '{"error":{"code":"not_found","message":"no such path"}}');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  opts.log.info('metrics listening', { host: opts.host, port: opts.port });
  return server;
}
