import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { request as httpsRequest, type Server } from 'node:https';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import type { Db, MongoClient } from 'mongodb';
import type { ChildSupervisor } from '../../services/common/lifecycle/supervisor';
import type { Logger } from '../../services/common/log/logger';
import { readJsonResponse, type JsonResponse } from './http-response';
import { DEFAULT_JSON_LIMITS } from '../../services/common/json/limits';
import { createCa, issueCertificate, type PemPair } from '../../services/common/pki/certificates';
import { TokenStore } from '../../services/core/auth/tokens';
import type { DbConfig } from '../../services/core/config';
import { startDatabase } from '../../services/core/db/database';
import { DB_NAME } from '../../services/core/db/engine';
import { createCoreApp } from '../../services/core/http/app';
import { ClientIdentity } from '../../services/core/http/client-identity';
import { createCoreHttpsServer } from '../../services/core/http/server';
import { createCrl } from '../../services/common/pki/crl';
import { RecordStore, type ErasePurge } from '../../services/core/storage/records';
import { DataKeyRing, type KeyLookup } from '../../services/core/storage/data-keys';
import { firstDataKeySet } from '../../services/common/pki/data-key-file';
import { freePort } from './ports';
import { silentLogger } from './logger';
import { tempDir } from './tmp';

/**
 * Fixtures for core's integration tests: a real FerretDB (the binary the suite builds and
 * exports as FERRETDB_BINARY), the deployment PKI, the core HTTPS server set up exactly as
 * services/core/main.ts does, and an HTTPS client.
 */

/** The FerretDB binary under test; a missing one fails the test with what to do. */
export function ferretdbBinary(): string {
  const bin = process.env.FERRETDB_BINARY;
  if (!bin) {
    throw new Error('FERRETDB_BINARY is not set: run the suite through scripts/test.sh, or build FerretDB with scripts/lib/ferretdb.sh (ensure_ferretdb_binary) and export FERRETDB_BINARY=$NONSTOP_FERRETDB_BIN');
  }
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`FERRETDB_BINARY=${bin} is not an executable file: rebuild it with scripts/lib/ferretdb.sh (ensure_ferretdb_binary)`);
  }
  return bin;
}

export interface TestDatabase {
  cfg: DbConfig;
  child: ChildSupervisor;
  client: MongoClient;
  db: Db;
  /** Closes the client and stops FerretDB gracefully; the data dir stays. */
  stop: () => Promise<void>;
}

/** A DbConfig for FerretDB on a free loopback port (a fresh temp data dir unless given). */
export async function testDbConfig(dataDir: string, port?: number): Promise<DbConfig> {
  return {
    engine: 'ferretdb',
    port: port ?? (await freePort()),
    dataDir,
    ferretdbBinary: ferretdbBinary(),
    mongodBinary: '/nonexistent',
    startTimeoutMs: 30_000,
  };
}

/** Starts FerretDB through core's startDatabase on `dataDir`. */
export async function startTestDatabase(dataDir: string, opts: { port?: number; log?: Logger } = {}): Promise<TestDatabase> {
  const cfg = await testDbConfig(dataDir, opts.port);
  const { child, client } = await startDatabase(cfg, opts.log ?? silentLogger());
  let stopped = false;
  return {
    cfg,
    child,
    client,
    db: client.db(DB_NAME),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await client.close().catch(() => undefined);
      await child.stop();
    },
  };
}

/** A database in its own temp dir, and one call that stops it and removes the dir. */
export async function startScratchDatabase(opts: { log?: Logger } = {}): Promise<TestDatabase & { dataDir: string; cleanup: () => Promise<void> }> {
  const tmp = tempDir('nonstop-core-db-');
  let database: TestDatabase;
  try {
    database = await startTestDatabase(tmp.dir, opts);
  } catch (err) {
    tmp.cleanup();
    throw err;
  }
  return {
    ...database,
    dataDir: tmp.dir,
    cleanup: async () => {
      await database.stop();
      tmp.cleanup();
    },
  };
}

/** A fixed key-encryption key for a test's RecordStore (a file-backed one: DataKeyRing.load). */
export function testDataKeys(): DataKeyRing {
  return DataKeyRing.of(firstDataKeySet());
}

export interface CorePki {
  ca: PemPair;
  /** Core's server certificate, for localhost and 127.0.0.1. */
  server: PemPair;
  /** A broker's client certificate from the deployment CA. */
  broker: PemPair;
  /** A client certificate from another CA. */
  foreignClient: PemPair;
  /** A client certificate from the deployment CA whose validity ended yesterday. */
  expiredClient: PemPair;
  /** A certificate from the deployment CA meant for servers only (EKU serverAuth). */
  serverAuthOnly: PemPair;
  /**
   * A certificate from the deployment CA with no extended key usage at all: TLS accepts it
   * for any purpose, so only the app's own check can refuse it.
   */
  noEku: PemPair;
  /** The CA's revocation list (revoking nothing) and the broker names core knows. */
  crl: string;
  brokerNames: string[];
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A leaf signed by `ca` without an extended key usage extension (issueCertificate always adds one). */
async function issueWithoutEku(ca: PemPair, commonName: string): Promise<PemPair> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), ALG, false, ['sign']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex'),
    subject: `CN=${commonName}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  const keyDer = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(keyDer, 'PRIVATE KEY') };
}

export async function createCorePki(): Promise<CorePki> {
  const ca = await createCa('nonstop test CA');
  const otherCa = await createCa('another CA');
  const [server, broker, foreignClient, expiredClient, serverAuthOnly, noEku] = await Promise.all([
    issueCertificate(ca, { commonName: 'core', altNames: ['localhost', '127.0.0.1'], usage: 'server' }),
    issueCertificate(ca, { commonName: 'broker-1', usage: 'client' }),
    issueCertificate(otherCa, { commonName: 'broker-1', usage: 'client' }),
    issueCertificate(ca, { commonName: 'broker-1', usage: 'client', days: 1, notBefore: new Date(Date.now() - 3 * 86_400_000) }),
    issueCertificate(ca, { commonName: 'broker-1', usage: 'server' }),
    issueWithoutEku(ca, 'broker-1'),
  ]);
  return { ca, server, broker, foreignClient, expiredClient, serverAuthOnly, noEku, crl: await createCrl(ca, []), brokerNames: ['broker-1'] };
}

export interface CoreServer {
  port: number;
  server: Server;
  records: RecordStore;
  tokens: TokenStore;
  /** Messages of refused TLS handshakes, as the server saw them. */
  tlsErrors: string[];
  /** Who may connect, read from files in `identityDir` (rewrite them to revoke). */
  clients: ClientIdentity;
  identityFiles: { caFile: string; crlFile: string; namesFile: string };
  close: () => Promise<void>;
}

/**
 * Core's storage API on 127.0.0.1, wired as services/core/main.ts wires it. `tokens` lets a
 * fault test act between a request's steps (a TokenStore subclass); `defaultBudgetMs` is
 * core's REQUEST_BUDGET_MS; `dataKeys` its key file (a fixed test key when omitted);
 * `erasePurge` what core's main.ts gives FerretDB (db/sqlite-wal-purge.ts).
 */
export async function startCoreServer(opts: { pki: CorePki; db: Db; maxBodyBytes?: number; log?: Logger; tokens?: TokenStore; defaultBudgetMs?: number; dataKeys?: KeyLookup; erasePurge?: ErasePurge }): Promise<CoreServer> {
  const records = new RecordStore(opts.db, opts.dataKeys ?? testDataKeys(), opts.erasePurge);
  await records.init();
  const tokens = opts.tokens ?? new TokenStore(opts.db);
  const log = opts.log ?? silentLogger();
  const dir = tempDir('nonstop-core-identity-');
  const identityFiles = { caFile: join(dir.dir, 'ca.crt'), crlFile: join(dir.dir, 'ca.crl'), namesFile: join(dir.dir, 'brokers') };
  writeFileSync(identityFiles.caFile, opts.pki.ca.certPem);
  writeFileSync(identityFiles.crlFile, opts.pki.crl);
  writeFileSync(identityFiles.namesFile, `${opts.pki.brokerNames.join('\n')}\n`);
  const clients = await ClientIdentity.load(identityFiles, log);
  const app = createCoreApp({
    clients,
    records,
    tokens,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_JSON_LIMITS.maxBytes + 4096,
    ...(opts.defaultBudgetMs !== undefined ? { defaultBudgetMs: opts.defaultBudgetMs } : {}),
    log,
  });
  const { server, stopWatching } = createCoreHttpsServer({ cert: opts.pki.server.certPem, key: opts.pki.server.keyPem }, clients, app, log);
  const tlsErrors: string[] = [];
  server.on('tlsClientError', (err) => tlsErrors.push(err.message));
  server.keepAliveTimeout = 65_000;
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    server,
    records,
    tokens,
    tlsErrors,
    clients,
    identityFiles,
    close: async () => {
      stopWatching();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      dir.cleanup();
    },
  };
}

export type CoreResponse = JsonResponse;

export interface CoreRequest {
  port: number;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The CA that signed core's server certificate. */
  ca: string;
  /** The client certificate to present; none when omitted. */
  client?: PemPair;
  timeoutMs?: number;
}

/** One HTTPS request on a fresh connection; rejects when the TLS handshake or the exchange fails. */
export function coreRequest(req: CoreRequest): Promise<CoreResponse> {
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: req.port,
        method: req.method ?? 'GET',
        path: req.path,
        headers: { ...(req.body !== undefined ? { 'content-length': String(Buffer.byteLength(req.body)) } : {}), ...req.headers },
        ca: req.ca,
        ...(req.client ? { cert: req.client.certPem, key: req.client.keyPem } : {}),
        agent: false,
        timeout: req.timeoutMs ?? 10_000,
      },
      (res) => {
        readJsonResponse(res).then(resolve, reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error('request timed out')));
    r.on('error', reject);
    r.end(req.body);
  });
}

/** The `error.code` of a JSON error body, or undefined. */
/** Stores a note as the broker would (its client certificate, a fresh request id); resolves with the record id, rejects on anything but 201. */
export async function storeNote(core: { port: number }, pki: CorePki, token: string, body: Record<string, unknown>): Promise<string> {
  const res = await coreRequest({
    port: core.port,
    method: 'POST',
    path: '/v1/records/notes',
    headers: { 'content-type': 'application/json', 'x-request-id': randomUUID(), authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    ca: pki.ca.certPem,
    client: pki.broker,
  });
  if (res.status !== 201) throw new Error(`write answered ${res.status} ${res.text}`);
  return (res.json as { id: string }).id;
}

export function errorCode(res: CoreResponse): string | undefined {
  const body = res.json as { error?: { code?: unknown } } | undefined;
  return typeof body?.error?.code === 'string' ? body.error.code : undefined;
}
