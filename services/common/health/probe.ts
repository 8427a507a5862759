/**
 * The HEALTHCHECK command of every image: GET /healthz on the service's internal port.
 * Exits 0 when healthy, 1 otherwise; gives up before Docker's own timeout would.
 * Reads only METRICS_HOST/METRICS_PORT, so it needs none of the service's secrets.
 */
import { get } from 'node:http';

const port = Number(process.env.METRICS_PORT ?? '9464');
const configured = process.env.METRICS_HOST ?? '127.0.0.1';
const host = configured === '0.0.0.0' || configured === '::' || configured === '' ? '127.0.0.1' : configured;
const timeoutMs = Number(process.env.HEALTH_PROBE_TIMEOUT_MS ?? '3000');

const req = get({ host, port, path: '/healthz', timeout: timeoutMs }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (body += chunk));
  res.on('end', () => {
    process.stdout.write(`${body}\n`);
    process.exit(res.statusCode === 200 ? 0 : 1);
  });
});
req.on('timeout', () => {
  process.stdout.write('health probe timed out\n');
  req.destroy();
  process.exit(1);
});
req.on('error', (err) => {
  process.stdout.write(`health probe failed: ${err.message}\n`);
  process.exit(1);
});
