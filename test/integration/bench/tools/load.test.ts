import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCa, issueCertificate } from '../../../../services/common/pki/certificates';

/** bench/tools/load.js from the repository (dist/test/integration/bench/tools → the root). */
const LOAD_JS = join(__dirname, '..', '..', '..', '..', '..', 'bench', 'tools', 'load.js');

interface LoadOutput {
  sent: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  okPerSecond: number;
}

/**
 * The load client the benchmarks drive every path with, run as they run it (a plain node
 * process with its JSON options) against an HTTPS server on loopback that answers, or that
 * stops answering when the measured window begins.
 */
describe('bench load client: what a measured window accounts for', function () {
  this.timeout(60_000);

  let dir: string;
  let server: Server;
  let port: number;
  /** Answers held back (the path that stopped answering), released at the end. */
  const held: ServerResponse[] = [];
  let answerFrom = 0;
  let answerUntil = Infinity;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nonstop-load-'));
    const ca = await createCa('load test CA');
    const leaf = await issueCertificate(ca, { commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], usage: 'server' });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    server = createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
      req.resume();
      const t = Date.now();
      if (t < answerFrom || t >= answerUntil) return void held.push(res);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function load(opts: { windowStart: number; seconds: number; timeoutMs: number }): Promise<LoadOutput> {
    const options = { host: '127.0.0.1', port, servername: 'localhost', ca: join(dir, 'ca.pem'), method: 'GET', path: '/x', token: 't', concurrency: 4, ...opts };
    const { stdout } = await promisify(execFile)(process.execPath, [LOAD_JS, JSON.stringify(options)]);
    return JSON.parse(stdout) as LoadOutput;
  }

  it('counts requests answered in the window (positive control: the same server answering throughout)', async () => {
    answerFrom = 0;
    answerUntil = Infinity;
    const out = await load({ windowStart: Date.now() + 500, seconds: 1, timeoutMs: 1500 });
    assert.ok(out.ok > 10, JSON.stringify(out));
    assert.equal(out.failed, 0, JSON.stringify(out));
    assert.ok(out.okPerSecond > 10, JSON.stringify(out));
  });

  it('counts as failures the warm-up requests a stalled path leaves waiting through the whole window', async () => {
    const windowStart = Date.now() + 500;
    // Answers during the warm-up, then nothing: every loop is left on a request sent before the window.
    answerFrom = 0;
    answerUntil = windowStart - 200;
    const out = await load({ windowStart, seconds: 1, timeoutMs: 1500 });
    assert.equal(out.ok, 0, JSON.stringify(out));
    assert.equal(out.okPerSecond, 0, JSON.stringify(out));
    // One per loop: each waited on its last warm-up request until it timed out, after the window began.
    assert.equal(out.failed, 4, JSON.stringify(out));
    assert.deepEqual(out.statuses, { '0': 4 });
  });
});
