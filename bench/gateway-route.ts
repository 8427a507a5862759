/**
 * The gateway's HTTP route alone, before and after a change to it (issue 13: a lean
 * gateway route). Two builds of services/gateway/http/app run in this process, each with
 * its own admission control and a stub `submit` that answers at once (201 for a POST, 200
 * otherwise), so what is measured is the route's own cost: parsing, checks, the body, the
 * answer, the metrics. The load comes from bench/tools/load.js in its own process (closed
 * loop, keep-alive); that client speaks HTTPS only, so both apps sit behind the same
 * node:https server in this process and each figure carries the same TLS cost, which the
 * "tls only" side (a handler answering a fixed 200 at once) shows. Rounds alternate which
 * side goes first.
 *
 *   node dist/bench/gateway-route.js <dist dir of the build before> [rounds=5] [seconds=4] [concurrency=16]
 *
 * Prints one JSON line per round and a summary per side and method: requests/s and this
 * process's CPU per request (µs), each as median [min–max] over the rounds.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { DEFAULT_JSON_LIMITS } from '../services/common/json/limits';
import type { ReplyEnvelope } from '../services/common/queue/envelope';
import { PROTOCOL_VERSION } from '../services/common/queue/keys';
import type { QueueRequest } from '../services/gateway/queue/dispatcher';
import { gatewayMetrics } from '../services/gateway/metrics';
import { silentLogger } from '../test/support/logger';
import { tempDir } from '../test/support/tmp';
import { round, spreadText } from './stats';

const LOAD = join(__dirname, '../../bench/tools/load.js');
const TOKEN = 'nst_0123456789abcdef_secret';
const RECORD_ID = '0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
type Side = 'before' | 'after' | 'tls only';

interface Round {
  side: Side;
  method: 'GET' | 'POST';
  okPerSecond: number;
  cpuUsPerReq: number;
  errors: number;
}

/** createApp from one build's dist, wired as services/gateway/main.ts wires it. */
function loadApp(distDir: string): Handler {
  /* eslint-disable @typescript-eslint/no-require-imports -- the build to load is chosen at run time */
  const { createApp } = require(join(distDir, 'services/gateway/http/app.js')) as typeof import('../services/gateway/http/app');
  const { AdmissionControl } = require(join(distDir, 'services/gateway/http/admission.js')) as typeof import('../services/gateway/http/admission');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return createApp({
    gatewayId: 'gw-bench',
    limits: DEFAULT_JSON_LIMITS,
    requestTimeoutMs: 30_000,
    bodyTimeoutMs: 30_000,
    submit: (r: QueueRequest): Promise<ReplyEnvelope> =>
      Promise.resolve({ v: PROTOCOL_VERSION, id: r.id, status: r.method === 'POST' ? 201 : 200, body: r.method === 'POST' ? { id: r.id } : { id: RECORD_ID, title: 'bench' } }),
    admission: new AdmissionControl({ maxPendingRequests: 1024, maxPendingBytes: 1024 * DEFAULT_JSON_LIMITS.maxBytes }),
    metrics: gatewayMetrics(new Registry()),
    log: silentLogger(),
  });
}


async function listen(handler: Handler, tls: { cert: string; key: string }): Promise<Server> {
  const s = createServer({ ...tls, keepAliveTimeout: 65_000 }, handler);
  await new Promise<void>((ok, fail) => {
    s.once('error', fail);
    s.listen(0, '127.0.0.1', ok);
  });
  return s;
}

async function main(): Promise<void> {
  const [beforeArg, ...rest] = process.argv.slice(2);
  if (beforeArg === undefined) throw new Error('usage: gateway-route.js <dist dir of the build before> [rounds] [seconds] [concurrency]');
  const [rounds = 5, seconds = 4, concurrency = 16] = rest.map(Number);
  const files = tempDir('nonstop-bench-gateway-route-');
  try {
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(files.dir, 'key.pem'), '-out', join(files.dir, 'cert.pem'),
    ]);
    const tls = { cert: readFileSync(join(files.dir, 'cert.pem'), 'utf8'), key: readFileSync(join(files.dir, 'key.pem'), 'utf8') };
    writeFileSync(join(files.dir, 'ca.pem'), tls.cert);
    const tlsOnly: Handler = (req, res) => {
      req.resume();
      req.once('end', () => {
        res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json; charset=utf-8' });
        res.end('{}');
      });
    };
    const servers: Record<Side, Server> = {
      before: await listen(loadApp(resolve(beforeArg)), tls),
      after: await listen(loadApp(resolve(__dirname, '..')), tls),
      'tls only': await listen(tlsOnly, tls),
    };
    process.stderr.write(`load average before: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);

    const results: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const method of ['GET', 'POST'] as const) {
        const order: Side[] = r % 2 === 0 ? ['before', 'after', 'tls only'] : ['after', 'before', 'tls only'];
        for (const side of order) {
          const opts = {
            host: '127.0.0.1',
            port: (servers[side].address() as AddressInfo).port,
            servername: 'localhost',
            ca: join(files.dir, 'ca.pem'),
            method,
            path: method === 'GET' ? `/v1/records/notes/${RECORD_ID}` : '/v1/records/notes',
            token: TOKEN,
            concurrency,
            seconds,
          };
          // A discarded warm-up: connections open, JIT warm.
          await promisify(execFile)(process.execPath, [LOAD, JSON.stringify({ ...opts, seconds: 1 })], { maxBuffer: 64 << 20 });
          const cpu0 = process.cpuUsage();
          const { stdout } = await promisify(execFile)(process.execPath, [LOAD, JSON.stringify(opts)], { maxBuffer: 64 << 20 });
          const cpu = process.cpuUsage(cpu0);
          const out = JSON.parse(stdout) as { sent: number; ok: number; okPerSecond: number };
          const result: Round = { side, method, okPerSecond: out.okPerSecond, cpuUsPerReq: round((cpu.user + cpu.system) / out.sent, 1), errors: out.sent - out.ok };
          results.push(result);
          process.stdout.write(`${JSON.stringify({ round: r, ...result })}\n`);
        }
      }
    }
    for (const method of ['GET', 'POST'] as const) {
      const per = (side: Side): Round[] => results.filter((x) => x.side === side && x.method === method);
      for (const side of ['before', 'after', 'tls only'] as const) {
        const rs = per(side);
        process.stdout.write(`${method} ${side}: ${spreadText(rs.map((x) => x.okPerSecond), 0)} req/s; ${spreadText(rs.map((x) => x.cpuUsPerReq), 0)} µs CPU/req; errors ${rs.reduce((a, x) => a + x.errors, 0)}\n`);
      }
      // Rounds pair up in order: each round ran both sides back to back.
      const ratios = per('after').map((a, i) => a.cpuUsPerReq / per('before')[i]!.cpuUsPerReq);
      process.stdout.write(`${method} after/before CPU per request, per round: ${spreadText(ratios, 2)}\n`);
    }
    process.stderr.write(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
    await Promise.all(Object.values(servers).map((s) => new Promise<void>((ok) => s.close(() => ok()))));
    for (const s of Object.values(servers)) s.closeAllConnections();
  } finally {
    files.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
