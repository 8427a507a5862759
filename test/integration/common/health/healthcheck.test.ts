import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { startMetricsServer, type HealthReport } from '../../../../services/common/metrics/server';
import { silentLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { runCommand, type CommandResult } from '../../../support/run-command';
import { REPO_ROOT } from '../../../support/stack/build';

const HEALTHCHECK = join(REPO_ROOT, 'services', 'common', 'health', 'healthcheck.sh');

/** Runs the script as the images do (its own #! line), with only the variables a container passes it. */
const healthcheck = (env: Record<string, string>): Promise<CommandResult> => runCommand(HEALTHCHECK, [], { env: { PATH: '/usr/bin:/bin', ...env }, timeoutMs: 20_000 });

const close = (server: Server | TcpServer): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

/**
 * The images' health check (bash, /dev/tcp) against the service's real metrics listener on
 * loopback: its exit status is what Docker and the kubelet act on, its output what Docker keeps.
 */
describe('healthcheck.sh, the images\' health check', function () {
  this.timeout(30_000);

  let server: Server;
  let port: number;
  let report: HealthReport;

  before(async () => {
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: new Registry(), log: silentLogger(), health: () => report });
    port = (server.address() as AddressInfo).port;
  });

  after(() => close(server));

  it('exits 0 and prints the health report when /healthz answers 200', async () => {
    report = { ok: true, checks: { queue: 'up', tunnelsOpen: 2 } };
    const r = await healthcheck({ METRICS_HOST: '127.0.0.1', METRICS_PORT: String(port) });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), report, 'stdout is the report, parsed as the tests and operators parse it');
    assert.equal(r.stderr, '');
  });

  it('exits 1 and still prints the report when /healthz answers 503, from the same listener that answered 200', async () => {
    report = { ok: true, checks: {} };
    assert.equal((await healthcheck({ METRICS_PORT: String(port) })).code, 0, 'positive control: healthy first');
    report = { ok: false, checks: { queue: 'down' } };
    const r = await healthcheck({ METRICS_PORT: String(port) });
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.stdout), report);
  });

  it('probes loopback when the service listens on a wildcard address', async () => {
    report = { ok: true, checks: {} };
    for (const host of ['0.0.0.0', '::', '']) {
      const r = await healthcheck({ METRICS_HOST: host, METRICS_PORT: String(port) });
      assert.equal(r.code, 0, `METRICS_HOST=${JSON.stringify(host)}: ${r.stdout}${r.stderr}`);
    }
  });

  it('exits 1 with one line naming the address when nothing listens, where the listening port answers', async () => {
    report = { ok: true, checks: {} };
    assert.equal((await healthcheck({ METRICS_PORT: String(port) })).code, 0, 'positive control');
    const closed = await freePort();
    const r = await healthcheck({ METRICS_PORT: String(closed) });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, `health probe failed: cannot connect to 127.0.0.1:${closed}\n`);
    assert.equal(r.stderr, '', "bash's own connect error stays out of the output");
  });

  it('gives up with exit 1 when the listener accepts but never answers', async () => {
    const held: Socket[] = [];
    const silent = createTcpServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const r = await healthcheck({ METRICS_PORT: String((silent.address() as AddressInfo).port) });
      assert.equal(r.code, 1, 'not killed by the test timeout (-1): the script stops itself');
      assert.equal(r.stdout, 'health probe timed out\n');
      assert.equal(held.length, 1, 'it did connect');
    } finally {
      for (const s of held) s.destroy();
      await close(silent);
    }
  });

  it('reads a body that arrives in pieces and without a final newline', async () => {
    const body = JSON.stringify({ ok: true, checks: { part: 'x'.repeat(5000) } });
    const slow = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(body.slice(0, 10));
      setTimeout(() => res.end(body.slice(10)), 200);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const r = await healthcheck({ METRICS_PORT: String((slow.address() as AddressInfo).port) });
      assert.equal(r.code, 0, r.stdout);
      assert.equal(r.stdout, `${body}\n`);
    } finally {
      await close(slow);
    }
  });
});
