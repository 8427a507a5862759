import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { startMetricsServer } from '../../../../services/common/metrics/server';
import { silentLogger } from '../../../support/logger';

/** The internal metrics listener every service runs, on a loopback port the OS picks. */
describe('startMetricsServer', () => {
  let server: Server;
  let base: string;

  before(async () => {
    const registry = new Registry();
    new Counter({ name: 'nonstop_test_total', help: 'a counter for this test', registers: [registry] }).inc(3);
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, log: silentLogger(), health: () => ({ ok: true, checks: { part: 'up' } }) });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('serves the registry as Prometheus text and health as JSON', async () => {
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^nonstop_test_total 3$/m);
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true, checks: { part: 'up' } });
  });

  it('refuses any method but GET with a JSON 405', async () => {
    const res = await fetch(`${base}/metrics`, { method: 'POST' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.deepEqual(await res.json(), { error: { code: 'method_not_allowed', message: 'GET only', stored: 'no' } });
  });

  it('answers another path with a JSON 404', async () => {
    const res = await fetch(`${base}/other`);
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: { code: 'not_found', message: 'no such path', stored: 'no' } });
  });
});
