/**
 * Core alone, before and after the token grant cache (issue 13): the same in-process core
 * HTTPS app (wired as test/support/core-fixtures.ts wires it) on one real FerretDB, once
 * with a TokenStore that reads the token on every request and once with the service's
 * cached store. The load comes from bench/tools/load.js in its own process (closed loop,
 * keep-alive, a broker's client certificate), so this process's CPU is core's alone; the
 * database's is read from /proc/<pid>/stat. Rounds alternate between the two sides.
 *
 *   FERRETDB_BINARY=... node dist/bench/token-cache.js [rounds=5] [seconds=5] [concurrency=16]
 *
 * Prints one JSON line per round and a summary per side and method: requests/s, core and
 * FerretDB CPU per request (µs), token reads per request (driver command monitoring),
 * each as median [min–max] over the rounds.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CommandStartedEvent } from 'mongodb';
import { TokenGeneration, tokenGenerationPath } from '../services/core/auth/token-generation';
import { TokenStore } from '../services/core/auth/tokens';
import { connectClient, ensureDbPassword } from '../services/core/db/database';
import { DB_NAME } from '../services/core/db/engine';
import { coreRequest, createCorePki, startCoreServer, startScratchDatabase } from '../test/support/core-fixtures';
import { tempDir } from '../test/support/tmp';
import { parsePidStat, ticksPerSecond } from './host';
import { round, spreadText } from './stats';

const LOAD = join(__dirname, '../../bench/tools/load.js');

interface Round {
  side: 'before' | 'after';
  method: 'GET' | 'POST';
  okPerSecond: number;
  coreCpuUsPerReq: number;
  dbCpuUsPerReq: number;
  tokenReadsPerReq: number;
  errors: number;
}

/** utime + stime of every thread of a process, in µs (clock-tick resolution). */
function processCpuUs(pid: number): number {
  return (parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks * 1e6) / ticksPerSecond();
}


async function main(): Promise<void> {
  const [rounds = 5, seconds = 5, concurrency = 16] = process.argv.slice(2).map(Number);
  const database = await startScratchDatabase();
  const files = tempDir('nonstop-bench-token-cache-');
  try {
    const pki = await createCorePki();
    const pem = (name: string, text: string): string => {
      const p = join(files.dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      return p;
    };
    const tls = { ca: pem('ca.crt', pki.ca.certPem), cert: pem('client.crt', pki.broker.certPem), key: pem('client.key', pki.broker.keyPem) };

    let tokenReads = 0;
    const client = connectClient(database.cfg, ensureDbPassword(database.cfg), { monitorCommands: true });
    client.on('commandStarted', (ev: CommandStartedEvent) => {
      if (ev.commandName === 'find' && (ev.command as { find?: unknown }).find === 'tokens') tokenReads++;
    });
    await client.connect();
    const db = client.db(DB_NAME);
    const generation = new TokenGeneration(tokenGenerationPath(files.dir));
    generation.create();
    const servers = {
      before: await startCoreServer({ pki, db, tokens: new TokenStore(db) }),
      after: await startCoreServer({ pki, db, tokens: new TokenStore(db, { generation }) }),
    };
    const { token } = await new TokenStore(db).create({ collections: ['notes'], scopes: ['read', 'write'] });
    const stored = await coreRequest({
      port: servers.before.port,
      method: 'POST',
      path: '/v1/records/notes',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': randomUUID() },
      body: '{"title":"bench"}',
      ca: pki.ca.certPem,
      client: pki.broker,
    });
    const recordId = (stored.json as { id: string }).id;
    const dbPid = database.child.pid;
    if (dbPid === undefined) throw new Error('FerretDB is not running');
    process.stderr.write(`load average before: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);

    const results: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const method of ['GET', 'POST'] as const) {
        // Alternate which side goes first, so neither always runs on a warmer or cooler host.
        const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
        for (const side of order) {
          const opts = {
            host: '127.0.0.1',
            port: servers[side].port,
            servername: 'localhost',
            ...tls,
            method,
            path: method === 'GET' ? `/v1/records/notes/${recordId}` : '/v1/records/notes',
            token,
            requestId: true,
            concurrency,
            seconds,
          };
          // A discarded warm-up: connections open, JIT warm, the cache filled.
          await promisify(execFile)(process.execPath, [LOAD, JSON.stringify({ ...opts, seconds: 1 })]);
          const cpu0 = process.cpuUsage();
          const db0 = processCpuUs(dbPid);
          const reads0 = tokenReads;
          const { stdout } = await promisify(execFile)(process.execPath, [LOAD, JSON.stringify(opts)], { maxBuffer: 16 << 20 });
          const cpu = process.cpuUsage(cpu0);
          const dbUs = processCpuUs(dbPid) - db0;
          const reads = tokenReads - reads0;
          const out = JSON.parse(stdout) as { sent: number; ok: number; okPerSecond: number };
          const round1: Round = {
            side,
            method,
            okPerSecond: out.okPerSecond,
            coreCpuUsPerReq: round((cpu.user + cpu.system) / out.sent, 1),
            dbCpuUsPerReq: round(dbUs / out.sent, 1),
            tokenReadsPerReq: round(reads / out.sent, 4),
            errors: out.sent - out.ok,
          };
          results.push(round1);
          process.stdout.write(`${JSON.stringify({ round: r, ...round1 })}\n`);
        }
      }
    }
    for (const method of ['GET', 'POST'] as const) {
      for (const side of ['before', 'after'] as const) {
        const rs = results.filter((x) => x.side === side && x.method === method);
        process.stdout.write(
          `${method} ${side}: ${spreadText(rs.map((x) => x.okPerSecond), 0)} req/s; core ${spreadText(rs.map((x) => x.coreCpuUsPerReq), 0)} µs CPU/req; FerretDB ${spreadText(rs.map((x) => x.dbCpuUsPerReq), 0)} µs CPU/req; ` +
            `token reads/req ${spreadText(rs.map((x) => x.tokenReadsPerReq), 4)}; errors ${rs.reduce((a, x) => a + x.errors, 0)}\n`,
        );
      }
    }
    process.stderr.write(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
    await Promise.all([servers.before.close(), servers.after.close()]);
    await client.close();
  } finally {
    await database.cleanup();
    files.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
