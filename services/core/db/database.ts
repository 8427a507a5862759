import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient, MongoServerError, type MongoClientOptions } from 'mongodb';
import { ChildSupervisor } from '../../common/lifecycle/supervisor';
import type { Logger } from '../../common/log/logger';
import { writeIfAbsent } from '../../common/pki/files';
import type { DbConfig } from '../config';
import { DB_NAME, DB_USER, engineCommand, mongoUri } from './engine';

/** Where the database password lives: on the data volume, readable by the core user only. */
export function passwordFile(cfg: DbConfig): string {
  return join(cfg.dataDir, 'credentials', 'db.password');
}

/** The database password, generated on first start. */
export function ensureDbPassword(cfg: DbConfig): string {
  const file = passwordFile(cfg);
  if (!existsSync(file)) writeIfAbsent(file, randomBytes(32).toString('base64url'), 0o600);
  return readFileSync(file, 'utf8').trim();
}

/**
 * A client logged in as the service user, with durable-write defaults. Requests bound
 * each operation themselves (storage/deadline.ts: an AbortSignal and maxTimeMS), since
 * this driver ignores timeoutMS; `extra` is for tests that watch the driver's events.
 */
export function connectClient(cfg: DbConfig, password: string, extra: MongoClientOptions = {}): MongoClient {
  return new MongoClient(mongoUri(cfg.port), {
    ...extra,
    auth: { username: DB_USER, password },
    authMechanism: 'SCRAM-SHA-256',
    // An acknowledgement means journaled on disk (MongoDB); FerretDB commits every write
    // with SQLite synchronous=FULL before answering, and ignores this setting.
    writeConcern: { w: 'majority', journal: true },
    retryWrites: false,
    serverSelectionTimeoutMS: 5000,
    connectTimeoutMS: 3000,
    maxPoolSize: 64,
  });
}

async function waitForPing(cfg: DbConfig, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    const probe = new MongoClient(mongoUri(cfg.port), { serverSelectionTimeoutMS: 1000, connectTimeoutMS: 1000 });
    try {
      await probe.db('admin').command({ ping: 1 });
      return;
    } catch {
      await sleep(200);
    } finally {
      await probe.close().catch(() => undefined);
    }
  }
  throw new Error(`the database did not answer within ${cfg.startTimeoutMs} ms`);
}

/** MongoDB: create the service user through the localhost exception on first start. */
async function ensureMongoUser(cfg: DbConfig, password: string, log: Logger): Promise<void> {
  const client = connectClient(cfg, password);
  try {
    await client.db('admin').command({ ping: 1 });
    await client.db(DB_NAME).command({ listCollections: 1, nameOnly: true });
    return;
  } catch (err) {
    if (!(err instanceof MongoServerError) || err.code !== 18) throw err;
  } finally {
    await client.close().catch(() => undefined);
  }
  const bare = new MongoClient(mongoUri(cfg.port), { serverSelectionTimeoutMS: 3000 });
  try {
    await bare.db('admin').command({ createUser: DB_USER, pwd: password, roles: [{ role: 'readWrite', db: DB_NAME }, { role: 'dbAdmin', db: DB_NAME }] });
    log.info('database user created');
  } finally {
    await bare.close().catch(() => undefined);
  }
}

/**
 * Starts the database on loopback under supervision (restarted with backoff if it dies),
 * waits until it answers, makes sure the service user exists, and returns a logged-in client.
 */
export async function startDatabase(cfg: DbConfig, log: Logger): Promise<{ child: ChildSupervisor; client: MongoClient }> {
  const password = ensureDbPassword(cfg);
  const cmd = engineCommand(cfg, password);
  for (const dir of cmd.dirs) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const child = new ChildSupervisor(
    { name: cfg.engine, command: cmd.command, args: cmd.args, env: cmd.env, stopSignal: 'SIGTERM', stopTimeoutMs: 15_000, backoff: { baseMs: 500, capMs: 15_000, minMs: 250 } },
    log,
  );
  child.start();
  try {
    await waitForPing(cfg, Date.now() + cfg.startTimeoutMs);
    if (cfg.engine === 'mongodb') await ensureMongoUser(cfg, password, log);
    const client = connectClient(cfg, password);
    await client.connect();
    await client.db(DB_NAME).command({ ping: 1 });
    return { child, client };
  } catch (err) {
    await child.stop();
    throw err;
  }
}
