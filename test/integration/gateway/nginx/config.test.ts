import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { connect as connectTcp } from 'node:net';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { selfSignedServerCertificate } from '../../../../services/common/pki/certificates';
import { renderNginxConf } from '../../../../services/gateway/nginx/config';
import { requireBinary } from '../../../support/binaries';
import { freePort } from '../../../support/ports';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface AppSeen {
  method: string;
  url: string;
  bodyBytes: number;
  forwardedProto: string | undefined;
  forwardedFor: string | undefined;
}

const MAX_BODY = 1_048_576;

describe('gateway nginx.conf with the real nginx', function () {
  this.timeout(30_000);

  let nginxBin: string;
  let tmp: { dir: string; cleanup: () => void };
  let confPath: string;
  let accessLog: string;
  let certPem: string;
  let httpPort: number;
  let httpsPort: number;
  let app: http.Server;
  let nginx: ChildProcess | undefined;
  let nginxStderr = '';
  const seen: AppSeen[] = [];

  async function distinctFreePorts(n: number): Promise<number[]> {
    const ports = new Set<number>();
    while (ports.size < n) ports.add(await freePort());
    return [...ports];
  }

  before(async () => {
    nginxBin = requireBinary('nginx', '/usr/sbin/nginx', '/usr/bin/nginx');
    tmp = tempDir('nonstop-nginx-');
    // nginx started as root hands requests to unprivileged workers: they must reach the run dir.
    chmodSync(tmp.dir, 0o755);
    const [h, s, appPort] = await distinctFreePorts(3);
    httpPort = h!;
    httpsPort = s!;

    const cert = await selfSignedServerCertificate('localhost', ['localhost', '127.0.0.1']);
    certPem = cert.certPem;
    const certFile = join(tmp.dir, 'tls.crt');
    const keyFile = join(tmp.dir, 'tls.key');
    writeFileSync(certFile, cert.certPem);
    writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });

    app = http.createServer((req, res) => {
      if (req.url === '/v1/crash') {
        req.socket.destroy();
        return;
      }
      if (req.url === '/v1/early') {
        // Answers from the headers alone, as the gateway app's admission control does.
        seen.push({ method: req.method ?? '', url: req.url, bodyBytes: -1, forwardedProto: undefined, forwardedFor: undefined });
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ error: { code: 'overloaded', message: 'from the app', stored: 'no' } }));
        return;
      }
      let bodyBytes = 0;
      req.on('data', (c: Buffer) => (bodyBytes += c.length));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          bodyBytes,
          forwardedProto: req.headers['x-forwarded-proto'] as string | undefined,
          forwardedFor: req.headers['x-forwarded-for'] as string | undefined,
        });
        if (req.url === '/v1/records/missing') {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'unknown_collection', message: 'from the app' } }));
          return;
        }
        res.writeHead(201, { 'content-type': 'application/json', 'x-request-id': 'req-123' });
        res.end(JSON.stringify({ id: 'abc', bodyBytes }));
      });
    });
    app.listen(appPort, '127.0.0.1');
    await once(app, 'listening');

    accessLog = join(tmp.dir, 'access.log');
    confPath = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      confPath,
      renderNginxConf({
        runDir: tmp.dir,
        accessLog,
        httpPort,
        httpsPort,
        serverNames: ['localhost', '127.0.0.1', '::1'],
        // Not 443, as when Docker publishes the container's 443 on another host port.
        publicHttpsPort: httpsPort,
        ipv6: false,
        appPort: appPort!,
        certFile,
        keyFile,
        maxBodyBytes: MAX_BODY,
        ratePerSecond: 1000,
        rateBurst: 1000,
        connectionsPerAddress: 100,
        requestTimeoutMs: 5000,
      }),
    );
  });

  after(async () => {
    if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
      const exited = once(nginx, 'exit');
      nginx.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(5000, undefined, { ref: false }).then(() => false)]);
      if (!done) {
        nginx.kill('SIGKILL');
        await exited;
      }
    }
    if (app) await new Promise<void>((resolve) => app.close(() => resolve()));
    tmp?.cleanup();
  });

  function request(
    path: string,
    opts: { method?: string; headers?: Record<string, string | number>; body?: Buffer; plain?: boolean } = {},
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      let replied = false;
      const common = { host: '127.0.0.1', path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false as const };
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          replied = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      };
      const req = opts.plain
        ? http.request({ ...common, port: httpPort }, onResponse)
        : https.request({ ...common, port: httpsPort, ca: certPem, servername: 'localhost' }, onResponse);
      req.on('error', (err: NodeJS.ErrnoException) => {
        // nginx may answer (413) and close before the whole body is written: the answer counts.
        if (!replied && !['EPIPE', 'ECONNRESET'].includes(err.code ?? '')) reject(err);
      });
      if (opts.body) req.end(opts.body);
      else req.end();
    });
  }

  const jsonError = (r: Reply): { code: string; message: string } => {
    assert.match(String(r.headers['content-type']), /^application\/json/);
    const body = JSON.parse(r.body) as { error: { code: string; message: string } };
    assert.deepEqual(Object.keys(body), ['error']);
    return body.error;
  };

  it('passes nginx -t', () => {
    const r = spawnSync(nginxBin, ['-t', '-c', confPath, '-e', 'stderr'], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /test is successful/);
  });

  describe('running', () => {
    before(async () => {
      nginx = spawn(nginxBin, ['-c', confPath, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
      nginx.stderr!.on('data', (c: Buffer) => (nginxStderr += c.toString('utf8')));
      await waitFor(
        `nginx on ${httpsPort}`,
        () => {
          if (nginx!.exitCode !== null) throw new Error(`nginx exited ${nginx!.exitCode}: ${nginxStderr}`);
          return new Promise<boolean>((resolve) => {
            const s = connect({ host: '127.0.0.1', port: httpsPort, ca: certPem, servername: 'localhost' }, () => {
              s.end();
              resolve(true);
            });
            s.on('error', () => resolve(false));
          });
        },
        15_000,
        50,
      );
    });

    it('stays in the foreground (daemon off) as the process that was started', () => {
      assert.equal(nginx!.exitCode, null);
      assert.equal(readFileSync(join(tmp.dir, 'nginx.pid'), 'utf8').trim(), String(nginx!.pid));
    });

    it('proxies a normal request to the app and returns its answer', async () => {
      const body = Buffer.from(JSON.stringify({ name: 'x', qty: 3 }));
      const r = await request('/v1/records/orders', { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length }, body });
      assert.equal(r.status, 201);
      assert.deepEqual(JSON.parse(r.body), { id: 'abc', bodyBytes: body.length });
      assert.equal(r.headers['strict-transport-security'], 'max-age=63072000');
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers.server, 'nginx', 'server_tokens off: no version');
      const last = seen.at(-1)!;
      assert.deepEqual(last, { method: 'POST', url: '/v1/records/orders', bodyBytes: body.length, forwardedProto: 'https', forwardedFor: '127.0.0.1' });
    });

    it('passes the app\'s own JSON errors through unchanged', async () => {
      const r = await request('/v1/records/missing');
      assert.equal(r.status, 404);
      assert.deepEqual(jsonError(r), { code: 'unknown_collection', message: 'from the app' });
    });

    it('refuses a 2 MiB body with 413 JSON before the app sees it', async () => {
      const before = seen.length;
      const body = Buffer.alloc(2 * 1024 * 1024, 0x61);
      const r = await request('/v1/x', { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length }, body });
      assert.equal(r.status, 413);
      assert.deepEqual(jsonError(r), { code: 'body_too_large', message: 'body too large', stored: 'no' });
      assert.equal(seen.length, before, 'the app saw nothing');
    });

    it('streams a body to the app, so the app\'s answer from the headers reaches a client that has sent little of it', async () => {
      const before = seen.length;
      const r = await new Promise<Reply>((resolve, reject) => {
        const req = https.request(
          { host: '127.0.0.1', port: httpsPort, path: '/v1/early', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': MAX_BODY }, ca: certPem, servername: 'localhost', agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
              req.destroy();
            });
          },
        );
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (!['EPIPE', 'ECONNRESET'].includes(err.code ?? '')) reject(err);
        });
        // 16 KiB of a declared 1 MiB, then nothing: nginx gathering the body would never proxy it.
        req.write(Buffer.alloc(16 * 1024, 0x20));
      });
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '1');
      assert.deepEqual(JSON.parse(r.body), { error: { code: 'overloaded', message: 'from the app', stored: 'no' } });
      assert.equal(seen.length, before + 1);
    });

    it('accepts a body just under the limit', async () => {
      const body = Buffer.alloc(MAX_BODY - 1024, 0x61);
      const r = await request('/v1/x', { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length }, body });
      assert.equal(r.status, 201);
      assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, body.length);
    });

    it('refuses an oversized header with 400 JSON', async () => {
      const before = seen.length;
      const r = await request('/v1/x', { headers: { 'x-big': 'a'.repeat(16_000) } });
      assert.equal(r.status, 400);
      assert.deepEqual(jsonError(r), { code: 'headers_too_large', message: 'request headers too large', stored: 'no' });
      assert.equal(seen.length, before);
    });

    it('answers paths outside /v1/ with 404 JSON', async () => {
      for (const path of ['/', '/admin', '/v1x/records', '/v2/records/x', '/_nonstop_error/413']) {
        const r = await request(path);
        assert.equal(r.status, 404, path);
        assert.deepEqual(jsonError(r), { code: 'not_found', message: 'no such endpoint', stored: 'no' }, path);
      }
    });

    it('answers with 502 JSON when the app drops the connection', async () => {
      const r = await request('/v1/crash');
      assert.equal(r.status, 502);
      assert.equal(jsonError(r).code, 'unavailable');
    });

    it('redirects plain HTTP to HTTPS with 308, never proxying', async () => {
      const before = seen.length;
      const r = await request('/v1/records/orders?x=1', { plain: true, method: 'POST', headers: { authorization: 'Bearer abcdefgh12345678', 'content-length': 2 }, body: Buffer.from('{}') });
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `https://127.0.0.1:${httpsPort}/v1/records/orders?x=1`);
      assert.equal(seen.length, before);
    });

    /** One request written by hand on plain HTTP: the request line and headers exactly as given. */
    async function rawPlain(head: string): Promise<{ status: number; location: string | undefined; text: string }> {
      const socket = connectTcp({ host: '127.0.0.1', port: httpPort });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.end(`${head}\r\nConnection: close\r\n\r\n`);
      await once(socket, 'close');
      const text = Buffer.concat(chunks).toString('utf8');
      const status = /^HTTP\/1\.[01] (\d{3}) /.exec(text);
      assert.ok(status, `no status line in ${JSON.stringify(text.slice(0, 200))}`);
      return { status: Number(status[1]), location: /^location: (.*)\r$/im.exec(text)?.[1], text };
    }

    it('redirects plain HTTP only to the configured name the client asked for, with the public HTTPS port', async () => {
      for (const [host, target] of [
        ['localhost', 'localhost'],
        [`LOCALHOST:${httpPort}`, 'localhost'],
        ['127.0.0.1', '127.0.0.1'],
        ['[::1]', '[::1]'],
      ]) {
        const r = await request('/v1/records/orders?x=1', { plain: true, headers: { host: host! } });
        assert.equal(r.status, 308, host);
        assert.equal(r.headers.location, `https://${target}:${httpsPort}/v1/records/orders?x=1`, host);
      }
      // The Location works: the same path over HTTPS reaches the app.
      const followed = await request('/v1/records/orders?x=1');
      assert.equal(followed.status, 201);
    });

    it('answers a plain HTTP request for any other host with a JSON 400 that echoes nothing of it, and no Location', async () => {
      for (const host of ['evil.example', 'evil.example:80', 'localhost.evil.example', 'evil.example.localhost', '[::2]']) {
        const r = await request('/v1/records/orders', { plain: true, headers: { host } });
        assert.equal(r.status, 400, host);
        assert.equal(r.headers.location, undefined, host);
        assert.deepEqual(jsonError(r), { code: 'bad_request', message: 'unknown host', stored: 'no' }, host);
        assert.ok(!r.body.includes('evil') && !r.body.includes('::2'), `${host}: ${r.body}`);
      }
      // The request line's host decides over the Host header (RFC 9112 3.2.2), in both directions.
      const absolute = await rawPlain('GET http://evil.example/x HTTP/1.1\r\nHost: localhost');
      assert.equal(absolute.status, 400);
      assert.equal(absolute.location, undefined);
      assert.doesNotMatch(absolute.text, /evil/);
      const named = await rawPlain('GET http://localhost/x HTTP/1.1\r\nHost: evil.example');
      assert.equal(named.status, 308, 'positive control: a raw request for a configured name is redirected');
      assert.equal(named.location, `https://localhost:${httpsPort}/x`);
      // A path that looks like an authority stays a path under the configured name.
      const slashes = await rawPlain('GET //evil.example/x HTTP/1.1\r\nHost: localhost');
      assert.equal(slashes.location, `https://localhost:${httpsPort}//evil.example/x`);
      // HTTP/1.0 without a Host header: no name to trust.
      const none = await rawPlain('GET /x HTTP/1.0');
      assert.equal(none.status, 400);
      assert.equal(none.location, undefined);
    });

    it('writes JSON access lines without query strings', async () => {
      await request('/v1/records/orders?token=s3cr3t-in-query');
      const text = await waitFor('the access line', () => {
        const t = readFileSync(accessLog, 'utf8');
        return t.includes('"method":"GET","uri":"/v1/records/orders"') ? t : undefined;
      });
      const entries = text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { component: string; status: number; uri: string; requestId: string });
      assert.ok(entries.every((e) => e.component === 'nginx'));
      assert.ok(entries.some((e) => e.status === 413));
      assert.ok(entries.some((e) => e.status === 201 && e.requestId === 'req-123'));
      assert.doesNotMatch(text, /s3cr3t/);
    });

    it('keeps running through all of the above', () => {
      assert.equal(nginx?.exitCode, null, nginxStderr);
    });
  });
});
