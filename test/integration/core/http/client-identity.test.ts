import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createCa, issueCertificate, type PemPair } from '../../../../services/common/pki/certificates';
import { certificateSerial, createCrl } from '../../../../services/common/pki/crl';
import { TokenStore } from '../../../../services/core/auth/tokens';
import { createCoreApp } from '../../../../services/core/http/app';
import { ClientIdentity } from '../../../../services/core/http/client-identity';
import { CLIENT_IDENTITY_POLL_MS, createCoreHttpsServer } from '../../../../services/core/http/server';
import { RecordStore } from '../../../../services/core/storage/records';
import { coreRequest, errorCode, startScratchDatabase, type CoreResponse, type TestDatabase, testDataKeys } from '../../../support/core-fixtures';
import { memoryLogger } from '../../../support/logger';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/** One key file for the whole file: records written before a restart are read after it. */
const dataKeys = testDataKeys();

const KEYGEN = join(__dirname, '..', '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, env: Record<string, string>, args: string[] = []): void {
  const r = spawnSync(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), CORE_NAMES: 'localhost,127.0.0.1', ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, `keygen ${args.join(' ')}: ${r.stderr}`);
}

const pair = (dir: string, cert: string, key: string): PemPair => ({ certPem: readFileSync(join(dir, cert), 'utf8'), keyPem: readFileSync(join(dir, key), 'utf8') });

/**
 * Core's client identity from the attacker's side, on the files keygen writes, through the
 * HTTPS server and app services/core/main.ts builds, in front of a real FerretDB: two
 * brokers each with its own certificate; one revoked with `nonstop-keygen revoke-broker`
 * while core runs; a certificate from the same CA naming no broker; a CRL the CA did not sign.
 */
describe('core client identity: known brokers and the CA revocation list', function () {
  this.timeout(60_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let tree: ReturnType<typeof tempDir>;
  let server: Server;
  let stopWatching: () => void;
  let clients: ClientIdentity;
  let logs: ReturnType<typeof memoryLogger>;
  let token: string;
  let ca: string;
  const broker: Record<'one' | 'two', PemPair> = {} as Record<'one' | 'two', PemPair>;

  before(async () => {
    database = await startScratchDatabase();
    token = (await new TokenStore(database.db).create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
  });

  after(async () => {
    await database?.cleanup();
  });

  beforeEach(async () => {
    tree = tempDir('nonstop-identity-');
    keygen(tree.dir, {});
    keygen(tree.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' });
    broker.one = pair(tree.dir, 'broker/client.crt', 'broker/client.key');
    broker.two = pair(tree.dir, 'broker-2/client.crt', 'broker-2/client.key');
    ca = readFileSync(join(tree.dir, 'core/ca.crt'), 'utf8');
    logs = memoryLogger();
    clients = await ClientIdentity.load({ caFile: join(tree.dir, 'core/ca.crt'), crlFile: join(tree.dir, 'core/ca.crl'), namesFile: join(tree.dir, 'core/brokers') }, logs.log);
    const records = new RecordStore(database.db, dataKeys);
    await records.init();
    const app = createCoreApp({ clients, records, tokens: new TokenStore(database.db), maxBodyBytes: 64 * 1024, log: logs.log });
    ({ server, stopWatching } = createCoreHttpsServer({ cert: readFileSync(join(tree.dir, 'core/server.crt'), 'utf8'), key: readFileSync(join(tree.dir, 'core/server.key'), 'utf8') }, clients, app, logs.log));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  });

  afterEach(async () => {
    stopWatching();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    tree.cleanup();
  });

  const port = (): number => (server.address() as AddressInfo).port;
  const stored = (): Promise<number> => database.db.collection('records').countDocuments({});
  const post = (client: PemPair, agent?: Agent): Promise<CoreResponse & { reusedSocket: boolean }> =>
    agent
      ? new Promise((resolve, reject) => {
          const body = '{"title":"hi"}';
          const r = request(
            { host: '127.0.0.1', servername: 'localhost', port: port(), method: 'POST', path: '/v1/records/notes', agent, headers: { 'content-type': 'application/json', 'content-length': String(body.length), 'x-request-id': randomUUID(), authorization: `Bearer ${token}` } },
            (res) => {
              let text = '';
              res.on('data', (d: Buffer) => (text += d.toString('utf8')));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) as unknown, reusedSocket: r.reusedSocket }));
            },
          );
          r.on('error', reject);
          r.end(body);
        })
      : coreRequest({ port: port(), method: 'POST', path: '/v1/records/notes', headers: { 'content-type': 'application/json', 'x-request-id': randomUUID(), authorization: `Bearer ${token}` }, body: '{"title":"hi"}', ca, client }).then((r) => ({ ...r, reusedSocket: false }));

  /** Revokes broker-2 with keygen and waits until core has reloaded its files. */
  async function revokeBrokerTwo(): Promise<void> {
    const before = clients.generation;
    keygen(tree.dir, {}, ['revoke-broker', 'broker-2']);
    await waitFor('core to reload its client identity files', () => clients.generation > before, CLIENT_IDENTITY_POLL_MS * 5);
  }

  it('serves each of two brokers with its own certificate', async () => {
    assert.equal((await post(broker.one)).status, 201);
    assert.equal((await post(broker.two)).status, 201);
  });

  it("refuses a revoked broker's certificate at the handshake, without a restart, while the other broker is served", async () => {
    assert.equal((await post(broker.two)).status, 201, 'broker-2 is served before its revocation');
    await revokeBrokerTwo();
    const before = await stored();
    await assert.rejects(post(broker.two), (err: Error & { code?: string }) => typeof err.code === 'string' && err.code !== 'ERR_ASSERTION');
    assert.equal(await stored(), before);
    assert.equal((await post(broker.one)).status, 201);
  });

  it("ends a revoked certificate's access on the keep-alive connection it had open", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca, cert: broker.two.certPem, key: broker.two.keyPem });
    try {
      assert.equal((await post(broker.two, agent)).status, 201);
      // Only the CRL changes (broker-2 stays on core's list): the serial check alone must hold.
      const generation = clients.generation;
      writeFileSync(join(tree.dir, 'core/ca.crl'), await createCrl(pair(tree.dir, 'pki/ca.crt', 'pki/ca.key'), [{ serial: certificateSerial(broker.two.certPem), revokedAt: new Date() }]));
      await waitFor('core to reload its client identity files', () => clients.generation > generation, CLIENT_IDENTITY_POLL_MS * 5);
      const before = await stored();
      const res = await post(broker.two, agent);
      assert.equal(res.reusedSocket, true, 'the request went over the connection opened before the revocation');
      assert.equal(res.status, 403);
      assert.equal(errorCode(res), 'forbidden');
      assert.match(res.text, /the client certificate is revoked/);
      assert.equal(await stored(), before);
    } finally {
      agent.destroy();
    }
  });

  it('refuses with 403 a certificate from the deployment CA that names no broker core knows, storing nothing', async () => {
    const intruder = await issueCertificate(pair(tree.dir, 'pki/ca.crt', 'pki/ca.key'), { commonName: 'intruder', usage: 'client' });
    const before = await stored();
    const res = await post(intruder);
    assert.equal(res.status, 403);
    assert.match(res.text, /names no broker core knows/);
    assert.equal(await stored(), before);
  });

  it('keeps the revocation when the CRL is replaced by one the CA did not sign, and says so', async () => {
    await revokeBrokerTwo();
    const forger = await createCa('nonstop deployment CA');
    const generation = clients.generation;
    writeFileSync(join(tree.dir, 'core/ca.crl'), await createCrl(forger, []));
    await waitFor('core to log the unusable CRL', () => logs.lines.some((l) => l.message === 'client identity files changed but cannot be used; keeping the previous ones'), CLIENT_IDENTITY_POLL_MS * 5);
    assert.equal(clients.generation, generation);
    await assert.rejects(post(broker.two));
    assert.equal((await post(broker.one)).status, 201);
  });
});
