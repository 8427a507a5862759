import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect, type TLSSocket } from 'node:tls';
import { CoreClient } from '../../../services/broker/core-client/client';
import { CoreTlsFiles } from '../../../services/broker/core-client/tls-files';
import { certificateSerial, normalizeSerial, readCrls } from '../../../services/common/pki/crl';
import { pemCertificates } from '../../../services/common/pki/tls-files';
import { TokenStore } from '../../../services/core/auth/tokens';
import { createCoreApp } from '../../../services/core/http/app';
import { ClientIdentity } from '../../../services/core/http/client-identity';
import { CLIENT_IDENTITY_POLL_MS, createCoreHttpsServer } from '../../../services/core/http/server';
import { ServerCertificate } from '../../../services/core/http/server-certificate';
import { RecordStore } from '../../../services/core/storage/records';
import { startScratchDatabase, testDataKeys, type TestDatabase } from '../../support/core-fixtures';
import { memoryLogger } from '../../support/logger';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');
/** The broker's poll here; core's is CLIENT_IDENTITY_POLL_MS as in production. */
const BROKER_POLL_MS = 250;
const RELOAD_WAIT_MS = CLIENT_IDENTITY_POLL_MS * 5;

/**
 * Runs nonstop-keygen as its own process without blocking this one: core and the broker
 * under test live in this process and must keep polling their files while keygen runs
 * (`rotate ca` waits for them between writing the bundles and reissuing certificates).
 */
function keygen(out: string, env: Record<string, string>, args: string[] = []): Promise<{ status: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), CORE_NAMES: 'localhost,127.0.0.1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ status: code ?? -1, stderr }));
  });
}

async function keygenOk(out: string, env: Record<string, string>, args: string[] = []): Promise<void> {
  const r = await keygen(out, env, args);
  assert.equal(r.status, 0, `keygen ${args.join(' ')}: ${r.stderr}`);
}

const read = (dir: string, f: string): string => readFileSync(join(dir, f), 'utf8');
const serialOfFile = (dir: string, f: string): string => certificateSerial(read(dir, f));

/**
 * TLS rotation with overlap between core's real HTTPS server and app (in front of FerretDB)
 * and the broker's real core client, both following the files `nonstop-keygen rotate|retire
 * core-cert|broker-cert|ca` writes, under continuous inserts. Evidence is what each side saw
 * on the wire: the serial core presented in a handshake, the serial of the client
 * certificate core saw per request, and whether a client with the old certificate is still
 * let in (with the new one from the same place as control).
 */
describe('TLS rotation: core certificate, broker certificate and CA under load', function () {
  this.timeout(120_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let token: string;
  let tree: ReturnType<typeof tempDir>;
  let server: Server;
  let stopWatching: () => void;
  let coreLogs: ReturnType<typeof memoryLogger>;
  let brokerLogs: ReturnType<typeof memoryLogger>;
  let clients: ClientIdentity;
  let client: CoreClient;
  let follower: CoreTlsFiles;
  /** Serial of the client certificate of each request core answered. */
  let seenSerials: string[];
  let retries: number;

  before(async () => {
    database = await startScratchDatabase();
    token = (await new TokenStore(database.db).create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
  });
  after(async () => database?.cleanup());

  beforeEach(async () => {
    tree = tempDir('nonstop-tls-rotation-');
    await keygenOk(tree.dir, {});
    await keygenOk(tree.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' });
    coreLogs = memoryLogger();
    brokerLogs = memoryLogger();
    seenSerials = [];
    retries = 0;
    clients = await ClientIdentity.load({ caFile: join(tree.dir, 'core/ca.crt'), crlFile: join(tree.dir, 'core/ca.crl'), namesFile: join(tree.dir, 'core/brokers') }, coreLogs.log);
    const serverCert = ServerCertificate.load({ certFile: join(tree.dir, 'core/server.crt'), keyFile: join(tree.dir, 'core/server.key') }, coreLogs.log);
    const records = new RecordStore(database.db, testDataKeys());
    await records.init();
    const app = createCoreApp({ clients, records, tokens: new TokenStore(database.db), maxBodyBytes: 64 * 1024, log: coreLogs.log });
    ({ server, stopWatching } = createCoreHttpsServer(
      serverCert,
      clients,
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        if (peer?.serialNumber) seenSerials.push(normalizeSerial(peer.serialNumber));
        app(req, res);
      },
      coreLogs.log,
    ));
    // As services/core/main.ts sets it: an idle keep-alive socket closed by core as the broker
    // reuses it is a reset unrelated to rotation.
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const files = { ca: join(tree.dir, 'broker/ca.crt'), cert: join(tree.dir, 'broker/client.crt'), key: join(tree.dir, 'broker/client.key') };
    const tls = { ca: read(tree.dir, 'broker/ca.crt'), cert: read(tree.dir, 'broker/client.crt'), key: read(tree.dir, 'broker/client.key') };
    client = new CoreClient({ url: `https://127.0.0.1:${port()}`, ...tls, serverName: 'localhost', timeoutMs: 10_000, maxInFlight: 8, retries: 3 }, { inc: () => void retries++ });
    follower = new CoreTlsFiles(files, tls, (next) => client.useTls(next), brokerLogs.log);
    follower.start(BROKER_POLL_MS);
  });

  afterEach(async () => {
    follower.stop();
    client.close();
    stopWatching();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    tree.cleanup();
  });

  const port = (): number => (server.address() as AddressInfo).port;

  /** Inserts through the broker's client from `writers` loops until stopped; every answer but 201 is a failure. */
  function startLoad(writers = 4): { stop: () => Promise<{ ok: number; failed: string[] }> } {
    let stopped = false;
    let ok = 0;
    const failed: string[] = [];
    const loops = Array.from({ length: writers }, async () => {
      while (!stopped) {
        const id = randomUUID();
        try {
          const res = await client.insert({ requestId: id, collection: 'notes', token, key: id, deadline: performance.now() + 10_000 }, { title: 'load' });
          if (res.status === 201) ok++;
          else failed.push(`${res.status} ${JSON.stringify(res.body)}`);
        } catch (err) {
          failed.push((err as Error).message);
        }
      }
    });
    return {
      stop: async () => {
        stopped = true;
        await Promise.all(loops);
        return { ok, failed };
      },
    };
  }

  /** The serial of the certificate core presents in a new handshake, verified with `ca`. */
  function presentedSerial(ca: string, cert: string, key: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: port(), servername: 'localhost', ca, cert, key, minVersion: 'TLSv1.3' }, () => {
        resolve(normalizeSerial(s.getPeerCertificate().serialNumber));
        s.end();
      });
      s.on('error', reject);
    });
  }

  /** One POST with `cert`/`key`, resolved with its status; rejected when core refuses the TLS connection. */
  function post(ca: string, cert: string, key: string, agent?: Agent): Promise<{ status: number; reusedSocket: boolean; presented: string }> {
    return new Promise((resolve, reject) => {
      const body = '{"title":"probe"}';
      const r = request(
        { host: '127.0.0.1', servername: 'localhost', port: port(), method: 'POST', path: '/v1/records/notes', ...(agent ? { agent } : { ca, cert, key, agent: false }), headers: { 'content-type': 'application/json', 'content-length': String(body.length), 'x-request-id': randomUUID(), authorization: `Bearer ${token}` } },
        (res) => {
          const presented = normalizeSerial((res.socket as TLSSocket).getPeerCertificate().serialNumber);
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reusedSocket: r.reusedSocket, presented }));
        },
      );
      r.on('error', reject);
      r.end(body);
    });
  }

  const logged = (logs: ReturnType<typeof memoryLogger>, message: string): number => logs.lines.filter((l) => l.message === message).length;

  function assertLoad(result: { ok: number; failed: string[] }, floor: number): void {
    assert.deepEqual(result.failed, [], 'no insert failed across the rotation');
    assert.equal(retries, 0, 'no insert needed a retry (none was cut)');
    assert.ok(result.ok > floor, `inserts succeeded across the rotation (${result.ok}, floor ${floor})`);
  }

  it('core-cert: core serves the new certificate on new handshakes without cutting open connections, and retire deletes the old key and lists its serial', async () => {
    const ca = read(tree.dir, 'broker/ca.crt');
    const broker = { cert: read(tree.dir, 'broker/client.crt'), key: read(tree.dir, 'broker/client.key') };
    const oldSerial = serialOfFile(tree.dir, 'core/server.crt');
    assert.equal(await presentedSerial(ca, broker.cert, broker.key), oldSerial, 'core presents its first certificate');
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca, cert: broker.cert, key: broker.key });
    assert.equal((await post(ca, broker.cert, broker.key, keepAlive)).status, 201);
    const load = startLoad();

    await keygenOk(tree.dir, {}, ['rotate', 'core-cert']);
    const newSerial = serialOfFile(tree.dir, 'core/server.crt');
    assert.notEqual(newSerial, oldSerial);
    assert.equal(serialOfFile(tree.dir, 'core/server.crt.previous'), oldSerial, 'the old certificate is kept beside the new one');
    await waitFor('core to load the new server certificate', () => logged(coreLogs, 'server certificate reloaded') > 0, RELOAD_WAIT_MS);
    assert.equal(await presentedSerial(ca, broker.cert, broker.key), newSerial, 'a new handshake gets the new certificate');
    const onOpen = await post(ca, broker.cert, broker.key, keepAlive);
    assert.deepEqual(onOpen, { status: 201, reusedSocket: true, presented: oldSerial }, 'the connection opened before the rotation is still served, on its old certificate');

    await keygenOk(tree.dir, {}, ['retire', 'core-cert']);
    assert.equal(existsSync(join(tree.dir, 'core/server.crt.previous')) || existsSync(join(tree.dir, 'core/server.key.previous')), false, 'the old pair is deleted');
    const crl = await readCrls(read(tree.dir, 'core/ca.crl'), read(tree.dir, 'core/ca.crt'));
    assert.ok(crl.revoked.has(oldSerial), 'the old serial is on the CRL');
    assert.ok(!crl.revoked.has(newSerial), 'the new one is not');
    assert.equal((await keygen(tree.dir, {}, ['retire', 'core-cert'])).status, 2, 'a second retire has nothing to retire');
    await new Promise((r) => setTimeout(r, CLIENT_IDENTITY_POLL_MS * 2));
    assertLoad(await load.stop(), 20);
    keepAlive.destroy();
  });

  it('broker-cert: the broker moves new requests to its new certificate make-before-break, and retire puts the old one on the CRL so core refuses it', async () => {
    const ca = read(tree.dir, 'core/ca.crt');
    const old = { cert: read(tree.dir, 'broker/client.crt'), key: read(tree.dir, 'broker/client.key') };
    const oldSerial = certificateSerial(old.cert);
    const load = startLoad();
    await waitFor('core to see requests on the first certificate', () => seenSerials.includes(oldSerial), RELOAD_WAIT_MS);

    await keygenOk(tree.dir, {}, ['rotate', 'broker-cert']);
    const fresh = { cert: read(tree.dir, 'broker/client.crt'), key: read(tree.dir, 'broker/client.key') };
    const newSerial = certificateSerial(fresh.cert);
    assert.equal(serialOfFile(tree.dir, 'broker/client.crt.previous'), oldSerial);
    const brokers = JSON.parse(read(tree.dir, 'pki/brokers.json')) as { brokers: { name: string; certSerial: string }[] };
    assert.equal(brokers.brokers.find((b) => b.name === 'broker')?.certSerial, newSerial, 'pki/brokers.json holds the new serial');
    await waitFor('the broker to load its new certificate', () => logged(brokerLogs, 'core client certificate reloaded') > 0, RELOAD_WAIT_MS);
    const mark = seenSerials.length;
    await waitFor('core to see requests on the new certificate', () => seenSerials.slice(mark).filter((s) => s === newSerial).length > 10, RELOAD_WAIT_MS);
    await waitFor('the old pool to close once its requests are done', () => client.retiringInFlight === 0, RELOAD_WAIT_MS);
    const late = seenSerials.slice(seenSerials.length - 10);
    assert.deepEqual([...new Set(late)], [newSerial], 'the latest requests all came on the new certificate');
    assert.equal((await post(ca, old.cert, old.key)).status, 201, 'during the overlap core still accepts the old certificate');

    const generation = clients.generation;
    await keygenOk(tree.dir, {}, ['retire', 'broker-cert']);
    assert.equal(existsSync(join(tree.dir, 'broker/client.crt.previous')), false);
    await waitFor('core to load the CRL', () => clients.generation > generation, RELOAD_WAIT_MS);
    await assert.rejects(post(ca, old.cert, old.key), (err: NodeJS.ErrnoException) => typeof err.code === 'string', 'core refuses the retired certificate');
    assert.equal((await post(ca, fresh.cert, fresh.key)).status, 201, 'control: the new certificate from the same place is served');
    assertLoad(await load.stop(), 20);
  });

  it('ca: bundles [new, old] on both sides, core and the broker reissued under the new CA, retire refused while a broker holds an old-CA certificate, then the old CA distrusted', async () => {
    const oldCa = read(tree.dir, 'pki/ca.crt');
    const two = { cert: read(tree.dir, 'broker-2/client.crt'), key: read(tree.dir, 'broker-2/client.key') };
    const load = startLoad();
    await waitFor('core to see requests', () => seenSerials.length > 5, RELOAD_WAIT_MS);
    const reloads = logged(brokerLogs, 'core client certificate reloaded');

    await keygenOk(tree.dir, {}, ['rotate', 'ca']);
    const newCa = read(tree.dir, 'pki/ca.crt');
    assert.equal(read(tree.dir, 'pki/ca.crt.previous'), oldCa);
    for (const f of ['core/ca.crt', 'broker/ca.crt', 'broker-2/ca.crt']) assert.deepEqual(pemCertificates(read(tree.dir, f)), [...pemCertificates(newCa), ...pemCertificates(oldCa)], `${f} is the bundle [new, old]`);
    const issuedByNew = (pem: string): boolean => new X509Certificate(pem).verify(new X509Certificate(newCa).publicKey);
    assert.ok(issuedByNew(read(tree.dir, 'core/server.crt')) && issuedByNew(read(tree.dir, 'broker/client.crt')), "core's and the broker's certificates are reissued under the new CA");
    const newClientSerial = serialOfFile(tree.dir, 'broker/client.crt');
    await waitFor('the broker to load its new certificate', () => logged(brokerLogs, 'core client certificate reloaded') > reloads + 1 || brokerLogs.lines.some((l) => l.message === 'core client certificate reloaded' && l.serial === newClientSerial), RELOAD_WAIT_MS);
    await waitFor('core to see requests on the new-CA certificate', () => seenSerials.includes(newClientSerial), RELOAD_WAIT_MS);
    await waitFor('core to load its new-CA certificate', () => logged(coreLogs, 'server certificate reloaded') > 0, RELOAD_WAIT_MS);
    const bundle = read(tree.dir, 'broker-2/ca.crt');
    assert.equal(await presentedSerial(bundle, two.cert, two.key), serialOfFile(tree.dir, 'core/server.crt'), 'core presents its new-CA certificate');
    assert.equal((await post(bundle, two.cert, two.key)).status, 201, 'during the overlap a broker still on the old CA is served');

    const before = read(tree.dir, 'core/ca.crt') + read(tree.dir, 'core/ca.crl') + read(tree.dir, 'pki/brokers.json');
    const refused = await keygen(tree.dir, {}, ['retire', 'ca']);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /broker-2/, 'the refusal names the broker still on the old CA');
    assert.equal(refused.stderr.trim().split('\n').length, 1, 'in one line');
    assert.equal(read(tree.dir, 'core/ca.crt') + read(tree.dir, 'core/ca.crl') + read(tree.dir, 'pki/brokers.json'), before, 'a refused retire changes nothing');

    await keygenOk(tree.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' }, ['rotate', 'broker-cert']);
    // Not retired: its old certificate stays off the CRL, so what refuses it below is the CA alone.
    const twoNew = { cert: read(tree.dir, 'broker-2/client.crt'), key: read(tree.dir, 'broker-2/client.key') };
    const generation = clients.generation;
    await keygenOk(tree.dir, {}, ['retire', 'ca']);
    assert.deepEqual(pemCertificates(read(tree.dir, 'core/ca.crt')), pemCertificates(newCa), 'core trusts the new CA alone');
    assert.deepEqual(pemCertificates(read(tree.dir, 'broker/ca.crt')), pemCertificates(newCa), 'the broker trusts the new CA alone');
    assert.equal(existsSync(join(tree.dir, 'pki/ca.key.previous')), false, 'the old CA key is deleted');
    await waitFor('core to drop the old CA', () => clients.generation > generation && pemCertificates(clients.tlsOptions().ca).length === 1, RELOAD_WAIT_MS).catch((err: Error) => {
      throw new Error(`${err.message}: ${coreLogs.text()}`);
    });
    await assert.rejects(post(bundle, two.cert, two.key), (err: NodeJS.ErrnoException) => typeof err.code === 'string', "core refuses a certificate of the old CA");
    assert.equal((await post(newCa, twoNew.cert, twoNew.key)).status, 201, 'control: the same broker with its new-CA certificate is served');
    await new Promise((r) => setTimeout(r, BROKER_POLL_MS * 4));
    assertLoad(await load.stop(), 20);
  });

  it('refuses an unusable new file with one log line and keeps serving the last good one', async () => {
    const ca = read(tree.dir, 'broker/ca.crt');
    const broker = { cert: read(tree.dir, 'broker/client.crt'), key: read(tree.dir, 'broker/client.key') };
    const serverSerial = serialOfFile(tree.dir, 'core/server.crt');
    const { writeFileSync } = await import('node:fs');
    // core: a certificate with another key; the broker: a client key that is not its certificate's.
    writeFileSync(join(tree.dir, 'core/server.key'), read(tree.dir, 'broker-2/client.key'));
    writeFileSync(join(tree.dir, 'broker/client.key'), read(tree.dir, 'broker-2/client.key'));
    const refusedCore = 'server certificate files changed but cannot be used; keeping the previous pair';
    const refusedBroker = 'core TLS files changed but cannot be used; keeping the previous ones';
    await waitFor('core to refuse its new pair', () => logged(coreLogs, refusedCore) > 0, RELOAD_WAIT_MS);
    await waitFor('the broker to refuse its new key', () => logged(brokerLogs, refusedBroker) > 0, RELOAD_WAIT_MS);
    await new Promise((r) => setTimeout(r, CLIENT_IDENTITY_POLL_MS * 2));
    assert.equal(logged(coreLogs, refusedCore), 1, 'core logs the refusal once');
    assert.equal(logged(brokerLogs, refusedBroker), 1, 'the broker logs the refusal once');
    assert.equal(await presentedSerial(ca, broker.cert, broker.key), serverSerial, 'core still presents its last good certificate');
    const id = randomUUID();
    assert.equal((await client.insert({ requestId: id, collection: 'notes', token, key: id, deadline: performance.now() + 10_000 }, { title: 'x' })).status, 201, 'the broker still talks to core with its last good pair');
  });
});
