import assert from 'node:assert/strict';
import { randomUUID, X509Certificate } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { selfSignedServerCertificate, type PemPair } from '../../../../services/common/pki/certificates';
import { renderNginxConf } from '../../../../services/gateway/nginx/config';
import { ServedPair, servedPairPath } from '../../../../services/gateway/tls/served-pair';
import { requireBinary } from '../../../support/binaries';
import { memoryLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/**
 * The gateway's public certificate replaced while it serves (services/gateway/tls/served-pair.ts),
 * with the real nginx the image runs, signalled as the gateway's supervisor does. Clients keep
 * connections alive (Node's default agent) and trust the old and the new certificate, as a
 * client of an operator whose new certificate comes from the same CA would.
 */
describe('gateway public TLS certificate followed with the real nginx', function () {
  this.timeout(60_000);

  let nginxBin: string;
  let tmp: { dir: string; cleanup: () => void };
  let confPath: string;
  let httpsPort: number;
  let app: http.Server;
  let nginx: ChildProcess | undefined;
  let nginxStderr = '';
  let oldPair: PemPair;
  let newPair: PemPair;
  let certFile: string;
  let keyFile: string;

  const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

  /** The certificate a new TLS connection is served, read from the handshake (not trusted: any). */
  function servedFingerprint(): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: httpsPort, servername: 'localhost', rejectUnauthorized: false }, () => {
        const raw = s.getPeerCertificate().raw;
        s.end();
        resolve(new X509Certificate(raw).fingerprint256);
      });
      s.on('error', reject);
    });
  }

  async function startNginx(): Promise<void> {
    nginxStderr = '';
    nginx = spawn(nginxBin, ['-c', confPath, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr!.on('data', (c: Buffer) => (nginxStderr += c.toString('utf8')));
    await waitFor(`nginx on ${httpsPort}`, async () => {
      if (nginx!.exitCode !== null) throw new Error(`nginx exited ${nginx!.exitCode}: ${nginxStderr}`);
      return servedFingerprint().then(
        () => true,
        () => false,
      );
    });
  }

  async function stopNginx(): Promise<void> {
    if (!nginx || nginx.exitCode !== null || nginx.signalCode !== null) return;
    const exited = once(nginx, 'exit');
    nginx.kill('SIGTERM');
    await exited;
  }

  before(async () => {
    nginxBin = requireBinary('nginx', '/usr/sbin/nginx', '/usr/bin/nginx');
    [oldPair, newPair] = await Promise.all([
      selfSignedServerCertificate('localhost', ['localhost', '127.0.0.1']),
      selfSignedServerCertificate('localhost', ['localhost', '127.0.0.1']),
    ]);
  });

  beforeEach(async () => {
    tmp = tempDir('nonstop-served-pair-');
    // nginx started as root hands requests to unprivileged workers: they must reach the run dir.
    chmodSync(tmp.dir, 0o755);
    httpsPort = await freePort();
    let httpPort = await freePort();
    while (httpPort === httpsPort) httpPort = await freePort();
    const records = new Map<string, string>();
    app = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.method === 'POST') {
          const id = String(records.size + 1);
          records.set(id, Buffer.concat(chunks).toString('utf8'));
          res.writeHead(201).end(JSON.stringify({ id }));
        } else {
          const body = records.get(req.url!.split('/').pop()!);
          res.writeHead(body ? 200 : 404).end(body ?? '{}');
        }
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    certFile = join(tmp.dir, 'server.crt');
    keyFile = join(tmp.dir, 'server.key');
    writeFileSync(certFile, oldPair.certPem);
    writeFileSync(keyFile, oldPair.keyPem, { mode: 0o600 });
    confPath = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      confPath,
      renderNginxConf({
        runDir: tmp.dir,
        accessLog: join(tmp.dir, 'access.log'),
        httpPort,
        httpsPort,
        serverNames: ['localhost'],
        publicHttpsPort: httpsPort,
        ipv6: false,
        appPort: (app.address() as { port: number }).port,
        // As services/gateway/main.ts renders it: nginx reads only the checked copy.
        certFile: servedPairPath(tmp.dir),
        keyFile: servedPairPath(tmp.dir),
        maxBodyBytes: 1_048_576,
        ratePerSecond: 10_000,
        rateBurst: 10_000,
        connectionsPerAddress: 1000,
        requestTimeoutMs: 5000,
      }),
    );
  });

  afterEach(async () => {
    await stopNginx();
    nginx = undefined;
    await new Promise<void>((resolve) => app.close(() => resolve()));
    tmp.cleanup();
  });

  function follow(): { pair: ServedPair; logs: ReturnType<typeof memoryLogger> } {
    const logs = memoryLogger();
    const pair = new ServedPair({ certFile, keyFile, servedFile: servedPairPath(tmp.dir), reload: () => nginx?.kill('SIGHUP') ?? false, log: logs.log }, oldPair.certPem, oldPair.keyPem);
    return { pair, logs };
  }

  /**
   * Writers storing a record and reading it back over kept-alive connections, trusting `cas`;
   * every outcome tallied, as test/support/stack/write-load.ts does through a stack.
   */
  function startLoad(cas: string[], writers = 4): { stop: () => Promise<void>; succeeded: () => number; failures: () => Map<string, number>; resent: () => number } {
    const agent = new https.Agent({ keepAlive: true, ca: cas, servername: 'localhost' });
    const failures = new Map<string, number>();
    let ok = 0;
    let stopped = false;
    const fail = (what: string): void => void failures.set(what, (failures.get(what) ?? 0) + 1);
    /**
     * One request. Like browsers and most HTTP clients (and as Node's documentation of
     * `request.reusedSocket` advises), a request whose kept-alive connection the server closed
     * as it arrived (a reload's old worker closing its idle connections) is sent again once on
     * a new connection of its own; the POSTs carry an idempotency key, so that is safe. Counted
     * apart: a reset on a new connection is a failure.
     */
    let resent = 0;
    const send = (method: string, path: string, body?: string, headers: Record<string, string> = {}, retried = false): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        // The resend goes on a connection of its own: another pooled one may be closing too.
        const via = retried ? { agent: false as const, ca: cas, servername: 'localhost' } : { agent };
        const req = https.request({ host: '127.0.0.1', port: httpsPort, method, path, ...via, headers: { ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}) }, timeout: 10_000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (req.reusedSocket && err.code === 'ECONNRESET' && !retried) {
            resent++;
            send(method, path, body, headers, true).then(resolve, reject);
          } else reject(err);
        });
        req.end(body);
      });
    const loops = Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; !stopped; i++) {
        const title = JSON.stringify({ title: `w${w}-${i}` });
        try {
          const put = await send('POST', '/v1/records/notes', title, { 'idempotency-key': randomUUID() });
          if (put.status !== 201) {
            fail(`POST ${put.status}`);
            continue;
          }
          ok++;
          const got = await send('GET', `/v1/records/notes/${(JSON.parse(put.body) as { id: string }).id}`);
          if (got.status !== 200 || got.body !== title) fail(`GET ${got.status}`);
          else ok++;
        } catch (err) {
          fail(`network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        await sleep(5);
      }
    });
    return {
      succeeded: () => ok,
      failures: () => failures,
      resent: () => resent,
      stop: async () => {
        stopped = true;
        await Promise.all(loops);
        agent.destroy();
      },
    };
  }

  it('serves a new certificate and key written over the files after a graceful nginx reload, with 0 failed requests under load and no restart', async () => {
    const { pair, logs } = follow();
    await startNginx();
    pair.start(200);
    try {
      assert.equal(await servedFingerprint(), fingerprint(oldPair.certPem));
      const masterPid = nginx!.pid;
      const load = startLoad([oldPair.certPem, newPair.certPem]);
      await waitFor('load before the change', () => load.succeeded() >= 100);
      // As an operator or an ACME client writes them: one file, then the other.
      writeFileSync(certFile, newPair.certPem);
      writeFileSync(keyFile, newPair.keyPem);
      await waitFor('the new certificate served', async () => (await servedFingerprint()) === fingerprint(newPair.certPem));
      const atChange = load.succeeded();
      await waitFor('load after the change', () => load.succeeded() >= atChange + 100);
      await load.stop();
      process.stdout.write(`      ${load.succeeded()} succeeded, ${load.resent()} sent again after a kept-alive connection closed under them\n`);
      assert.deepEqual(Object.fromEntries(load.failures()), {}, `failed requests across the reload (${load.succeeded()} succeeded)`);
      assert.ok(load.succeeded() >= 200);
      // Reloaded, not restarted: the same master, still running.
      assert.equal(nginx!.pid, masterPid);
      assert.equal(nginx!.exitCode, null);
      assert.equal(pair.fingerprint, fingerprint(newPair.certPem));
      assert.equal(logs.lines.filter((l) => l.message === 'TLS certificate reloaded').length, 1, logs.text());
    } finally {
      pair.stop();
    }
  });

  it('refuses a key that is not the certificate\'s and a certificate that does not parse, one line each, and serves the last good pair, also after nginx restarts', async () => {
    const { pair, logs } = follow();
    await startNginx();
    pair.start(100);
    try {
      const refused = (): Record<string, unknown>[] => logs.lines.filter((l) => l.message === 'TLS certificate refused; still serving the last good pair');
      writeFileSync(certFile, newPair.certPem); // the key stays the old one: not this certificate's
      await waitFor('the mismatched pair refused', () => refused().length === 1);
      writeFileSync(certFile, 'not a certificate\n');
      await waitFor('the unparsable certificate refused', () => refused().length === 2);
      assert.deepEqual(refused().map((l) => l.err), ["the private key is not the certificate's", 'no PEM certificate in the certificate file']);
      await sleep(500); // five more checks of the same files: nothing more logged
      assert.equal(refused().length, 2, logs.text());
      // Positive control from the same place: a handshake succeeds, and it is the old certificate.
      assert.equal(await servedFingerprint(), fingerprint(oldPair.certPem));
      // nginx restarted by the supervisor reads the served copy, never the refused files.
      await stopNginx();
      await startNginx();
      assert.equal(await servedFingerprint(), fingerprint(oldPair.certPem));
      // The follower still works: a valid pair after the refused ones is served.
      writeFileSync(keyFile, newPair.keyPem);
      writeFileSync(certFile, newPair.certPem);
      await waitFor('the valid pair served', async () => (await servedFingerprint()) === fingerprint(newPair.certPem));
    } finally {
      pair.stop();
    }
  });
});
