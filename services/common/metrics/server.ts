import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { apiErrorBody } from '../errors/api-error';
import { ErrorCodes, type ErrorCodeName } from '../errors/codes';
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
    const replyError = (kind: ErrorCodeName, message: string): void => reply(ErrorCodes[kind].status, 'application/json', JSON.stringify(apiErrorBody(kind, message)));
    if (req.method !== 'GET') return replyError('methodNotAllowed', 'GET only');
    if (url === '/metrics') {
      opts.registry.metrics().then(
        (text) => reply(200, opts.registry.contentType, text),
        () => replyError('internal', 'metrics failed'),
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
    replyError('notFound', 'no such path');
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
