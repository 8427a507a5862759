/**
 * The broker's core client, before and after its move from node:https to an undici Pool
 * (issue 13): the same CoreClient calls (read = GET, insert = POST) at a fixed concurrency
 * against core's HTTPS app on one real FerretDB. Core and FerretDB run in a child process
 * (this file with --serve), so this process's CPU is the broker's client alone, plus the
 * driving loop that both sides share. "Before" is the previous commit's compiled client,
 * loaded from its own dist (a `git archive` of that commit built under /tmp):
 *
 *   git archive <commit> services tools tsconfig.json tsconfig.build.json | tar -x -C /tmp/before
 *   ln -s "$PWD/node_modules" /tmp/before/node_modules && (cd /tmp/before && npx tsc -p tsconfig.build.json)
 *   FERRETDB_BINARY=... node dist/bench/core-client.js /tmp/before/dist/services/broker/core-client/client.js \
 *     [rounds=5] [seconds=5] [concurrency=16]
 *
 * Rounds alternate which side goes first. Prints one JSON line per round and a summary per
 * side and method: requests/s and broker-process CPU per request (µs), with core's process
 * (app and FerretDB) CPU per request and the calls' p50/p99 latency beside it, as median
 * [min–max] over the rounds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CoreClient } from '../services/broker/core-client/client';
import { TokenGeneration, tokenGenerationPath } from '../services/core/auth/token-generation';
import { TokenStore } from '../services/core/auth/tokens';
import { coreRequest, createCorePki, startCoreServer, startScratchDatabase } from '../test/support/core-fixtures';
import { tempDir } from '../test/support/tmp';
import { parsePidStat, ticksPerSecond } from './host';
import { quantile, round, spreadText } from './stats';


/** What the child serving core hands to the driver. */
interface Served {
  port: number;
  ca: string;
  cert: string;
  key: string;
  token: string;
  recordId: string;
}

type Client = Pick<CoreClient, 'read' | 'insert' | 'close'>;
type ClientClass = new (...args: ConstructorParameters<typeof CoreClient>) => Client;

interface Round {
  side: 'before' | 'after';
  method: 'GET' | 'POST';
  okPerSecond: number;
  brokerCpuUsPerReq: number;
  coreCpuUsPerReq: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** utime + stime of every thread of a process, in µs (clock-tick resolution). */
function processCpuUs(pid: number): number {
  return (parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks * 1e6) / ticksPerSecond();
}

/** The CPU of a process and of every process below it (core's FerretDB), in µs. */
function treeCpuUs(pid: number): number {
  let us = processCpuUs(pid);
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    for (const c of children.split(' ').filter(Boolean)) us += treeCpuUs(Number(c));
  }
  return us;
}


/** Child mode: core's app on a scratch FerretDB, one token and one stored record. */
async function serve(): Promise<void> {
  const database = await startScratchDatabase();
  const files = tempDir('nonstop-bench-core-client-');
  const pki = await createCorePki();
  const generation = new TokenGeneration(tokenGenerationPath(files.dir));
  generation.create();
  // The service's cached token store, as core runs in production.
  const core = await startCoreServer({ pki, db: database.db, tokens: new TokenStore(database.db, { generation }) });
  const { token } = await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] });
  const stored = await coreRequest({
    port: core.port,
    method: 'POST',
    path: '/v1/records/notes',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': randomUUID() },
    body: '{"title":"bench"}',
    ca: pki.ca.certPem,
    client: pki.broker,
  });
  const served: Served = { port: core.port, ca: pki.ca.certPem, cert: pki.broker.certPem, key: pki.broker.keyPem, token, recordId: (stored.json as { id: string }).id };
  process.send!(served);
  process.on('disconnect', () => {
    void (async () => {
      await core.close();
      await database.cleanup();
      files.cleanup();
      process.exit(0);
    })();
  });
}

/** `concurrency` loops of one call each, for `seconds`; counts the answers that are not errors. */
async function drive(client: Client, served: Served, method: 'GET' | 'POST', concurrency: number, seconds: number): Promise<{ sent: number; ok: number; latencyMs: number[] }> {
  let sent = 0;
  let ok = 0;
  const latencyMs: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const call = { requestId: randomUUID(), collection: 'notes', token: served.token, deadline: performance.now() + 10_000 };
        sent++;
        const started = performance.now();
        try {
          const res = method === 'GET' ? await client.read(call, served.recordId) : await client.insert(call, { title: 'bench' });
          if (res.status === (method === 'GET' ? 200 : 201)) ok++;
        } catch {
          // counted as sent and not ok
        }
        latencyMs.push(performance.now() - started);
      }
    }),
  );
  return { sent, ok, latencyMs };
}

async function main(): Promise<void> {
  const [beforePath, ...rest] = process.argv.slice(2);
  if (!beforePath) throw new Error('usage: core-client.js <before client.js> [rounds] [seconds] [concurrency]');
  const [rounds = 5, seconds = 5, concurrency = 16] = rest.map(Number);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the previous commit's build, chosen at run time
  const Before = (require(resolve(beforePath)) as { CoreClient: ClientClass }).CoreClient;
  const classes: Record<Round['side'], ClientClass> = { before: Before, after: CoreClient };

  const child: ChildProcess = fork(__filename, ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const served = await new Promise<Served>((ok, fail) => {
      child.once('message', (m) => ok(m as Served));
      child.once('exit', (code) => fail(new Error(`core exited with ${code}`)));
    });
    const corePid = child.pid!;
    const options = { url: `https://127.0.0.1:${served.port}`, ca: served.ca, cert: served.cert, key: served.key, serverName: 'localhost', timeoutMs: 5000, maxInFlight: 64, retries: 3 };
    const noRetries = { inc: () => undefined };
    process.stderr.write(`load average before: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);

    const results: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const method of ['GET', 'POST'] as const) {
        // Alternate which side goes first, so neither always runs on a warmer or cooler host.
        const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
        for (const side of order) {
          const client = new classes[side](options, noRetries);
          // A discarded warm-up: connections open, JIT warm.
          await drive(client, served, method, concurrency, 1);
          const cpu0 = process.cpuUsage();
          const core0 = treeCpuUs(corePid);
          const out = await drive(client, served, method, concurrency, seconds);
          const cpu = process.cpuUsage(cpu0);
          const coreUs = treeCpuUs(corePid) - core0;
          client.close();
          const result: Round = {
            side,
            method,
            okPerSecond: round(out.ok / seconds, 0),
            brokerCpuUsPerReq: round((cpu.user + cpu.system) / out.sent, 1),
            coreCpuUsPerReq: round(coreUs / out.sent, 1),
            p50Ms: round(quantile(out.latencyMs, 0.5), 2),
            p99Ms: round(quantile(out.latencyMs, 0.99), 2),
            errors: out.sent - out.ok,
          };
          results.push(result);
          process.stdout.write(`${JSON.stringify({ round: r, ...result })}\n`);
        }
      }
    }
    for (const method of ['GET', 'POST'] as const) {
      for (const side of ['before', 'after'] as const) {
        const rs = results.filter((x) => x.side === side && x.method === method);
        process.stdout.write(
          `${method} ${side}: ${spreadText(
            rs.map((x) => x.okPerSecond),
            0,
          )} req/s; broker ${spreadText(
            rs.map((x) => x.brokerCpuUsPerReq),
            0,
          )} µs CPU/req; core+FerretDB ${spreadText(
            rs.map((x) => x.coreCpuUsPerReq),
            0,
          )} µs CPU/req; p50 ${spreadText(
            rs.map((x) => x.p50Ms),
            2,
          )} ms; p99 ${spreadText(
            rs.map((x) => x.p99Ms),
            2,
          )} ms; errors ${rs.reduce((a, x) => a + x.errors, 0)}\n`,
        );
      }
    }
    process.stderr.write(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  } finally {
    child.disconnect();
    await new Promise((ok) => child.once('exit', ok));
  }
}

(process.argv[2] === '--serve' ? serve() : main()).then(
  () => {
    if (process.argv[2] !== '--serve') process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
