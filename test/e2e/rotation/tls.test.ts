import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { normalizeSerial, readCrls } from '../../../services/common/pki/crl';
import { pemCertificates } from '../../../services/common/pki/tls-files';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { startWriteLoad, type WriteLoad } from '../../support/stack/write-load';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

const BROKER_DIR = '/etc/nonstop/broker';
const CORE_DIR = '/etc/nonstop/core';

/**
 * One HTTPS request to core from where the broker runs, with the TLS material given (texts,
 * or files of the broker's volume): prints the status core answered and the serial of the
 * certificate core presented, or the error that ended the connection. An unauthenticated
 * GET: a client core lets in gets 401 from the token check, one it refuses never gets that far.
 */
const PROBE = `
const fs = require('node:fs'), https = require('node:https');
const o = JSON.parse(process.argv[1]);
const t = (k) => o[k] ?? fs.readFileSync(o[k + 'File'], 'utf8');
const req = https.request({ host: 'core', port: 8443, servername: 'core', method: 'GET', path: '/v1/records/notes/00000000-0000-4000-8000-000000000000',
  ca: t('ca'), cert: t('cert'), key: t('key'), agent: false, minVersion: 'TLSv1.3' }, (res) => {
  const serial = res.socket.getPeerCertificate().serialNumber;
  res.resume();
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, serverSerial: serial })));
});
req.setTimeout(10000, () => req.destroy(new Error('timeout')));
req.on('error', (e) => console.log(JSON.stringify({ error: e.code ?? e.message })));
req.end();
`;

interface ProbeResult {
  status?: number;
  serverSerial?: string;
  error?: string;
}

interface Tls {
  ca?: string;
  cert?: string;
  key?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** The broker's own files, as its core client reads them. */
const BROKER_FILES: Tls = { caFile: `${BROKER_DIR}/ca.crt`, certFile: `${BROKER_DIR}/client.crt`, keyFile: `${BROKER_DIR}/client.key` };

const serialOf = (pem: string): string => normalizeSerial(new X509Certificate(pem).serialNumber);

/** The earliest notAfter among the certificates of a file, unix seconds: what the expiry gauge reports for it. */
const notAfter = (pem: string): number => Math.min(...pemCertificates(pem).map((c) => Math.floor(new X509Certificate(c).validToDate.getTime() / 1000)));

/**
 * Rotation with overlap of the deployment's TLS (issue 15.5) on a real stack under client
 * write load, each step run as an operator's `docker compose run keygen nonstop-keygen ...`:
 *
 *   core-cert   rotate → core logs the reload and presents the new serial on new handshakes;
 *               retire → the old key is gone and the old serial is on the CRL (a CRL-checking
 *               verifier refuses the old certificate, accepts the new one).
 *   broker-cert rotate → the broker reloads; core sees connections with the new client serial;
 *               the old certificate is still let in (overlap). retire → a client with the old
 *               certificate is refused by core, one with the new from the same place let in.
 *   ca          rotate → both sides trust the bundle [new, old]; core presents a certificate of
 *               the new CA and sees the broker's new one; retire → bundles hold the new CA
 *               alone; a client with the old CA's certificate is refused, the new one let in.
 *   load        each step: 0 failed requests, and more succeeded than a floor.
 */
describe('TLS rotation with overlap on a running stack', function () {
  this.timeout(900_000);

  let stack: Stack | undefined;
  let load: WriteLoad | undefined;
  let api: ApiClient;
  let token: string;
  const s = (): Stack => {
    if (!stack) throw new Error('no stack');
    return stack;
  };

  before(async () => {
    stack = await upStack();
    await s().waitHealthy('gateway');
    await s().waitHealthy('broker');
    api = await ApiClient.forStack(s());
    token = await createToken(s(), ['notes']);
  });

  afterEach(async () => {
    await load?.stop();
    load = undefined;
  });

  after(async () => {
    await stack?.down();
  });

  async function readIn(service: string, path: string): Promise<string> {
    const r = await s().exec(service, ['node', '-e', "process.stdout.write(require('node:fs').readFileSync(process.argv[1], 'utf8'))", path]);
    assert.equal(r.exitCode, 0, `read ${path} in ${service}: ${r.stderr}`);
    return r.stdout;
  }

  async function existsIn(service: string, path: string): Promise<boolean> {
    const r = await s().exec(service, ['node', '-e', "process.exit(require('node:fs').existsSync(process.argv[1]) ? 0 : 3)", path]);
    assert.ok(r.exitCode === 0 || r.exitCode === 3, `exists ${path} in ${service}: ${r.stderr}`);
    return r.exitCode === 0;
  }

  async function probe(tls: Tls): Promise<ProbeResult> {
    const r = await s().exec('broker', ['node', '-e', PROBE, JSON.stringify(tls)]);
    assert.equal(r.exitCode, 0, `probe: ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim()) as ProbeResult;
    if (out.serverSerial) out.serverSerial = normalizeSerial(out.serverSerial);
    return out;
  }

  /** Each JSON log line of `service` with this message. */
  async function logLines(service: string, message: string): Promise<Record<string, unknown>[]> {
    return (await s().logs(service))
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes(message))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.message === message);
  }

  async function waitForLog(service: string, message: string, match: (l: Record<string, unknown>) => boolean = () => true, atLeast = 1): Promise<void> {
    await waitFor(`${service} logs ${JSON.stringify(message)}`, async () => (await logLines(service, message)).filter(match).length >= atLeast, 60_000, 500).catch(async (err: Error) => {
      // What the service said that is not routine traffic, to tell a missed reload from a refused or crashed one.
      const said = (await s().logs(service)).split('\n').filter((l) => !/"(record stored|client connection|request)"/.test(l)).slice(-30);
      throw new Error(`${err.message}; ${service}'s last other log lines:\n${said.join('\n')}`);
    });
  }

  const countLog = async (service: string, message: string): Promise<number> => (await logLines(service, message)).length;

  /** nonstop_certificate_expiry_timestamp_seconds{certificate=role} as the tier exports it now. */
  async function expiryGauge(tier: 'core' | 'broker', role: string): Promise<number> {
    const r = await s().exec(tier, ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    assert.equal(r.exitCode, 0, `${tier} metrics: ${r.stderr}`);
    const m = new RegExp(`^nonstop_certificate_expiry_timestamp_seconds\\{[^}]*certificate="${role}"[^}]*\\} (\\S+)$`, 'm').exec(r.stdout);
    assert.ok(m, `${tier} exports the expiry of its ${role} certificate`);
    return Number(m[1]);
  }

  async function keygen(...args: string[]): Promise<void> {
    await s().runAgain('keygen', {}, ['nonstop-keygen', ...args]);
  }

  async function startLoad(): Promise<WriteLoad> {
    load = startWriteLoad(api, token);
    await waitFor('the load has succeeded requests', () => load!.succeeded() > 20, 60_000, 200);
    return load;
  }

  async function moreRequests(l: WriteLoad, what: string): Promise<void> {
    const now = l.succeeded();
    await waitFor(`requests succeed ${what}`, () => l.succeeded() > now + 20, 60_000, 200);
  }

  async function stopLoad(l: WriteLoad): Promise<void> {
    await l.stop();
    console.log(`      load: ${l.summary()}`);
    assert.equal(l.failures(), 0, l.summary());
    assert.ok(l.succeeded() > 100, l.summary());
  }

  /** `openssl verify -crl_check` of `cert` against core's CA file and CRL file: what a CRL-checking verifier decides. */
  async function crlVerify(cert: string, ca: string, crl: string): Promise<{ ok: boolean; output: string }> {
    const dir = tempDir('nonstop-tls-verify-');
    try {
      for (const [f, text] of [['cert.pem', cert], ['ca.pem', ca], ['crl.pem', crl]] as const) writeFileSync(join(dir.dir, f), text);
      const r = await promisify(execFile)('openssl', ['verify', '-crl_check', '-CAfile', join(dir.dir, 'ca.pem'), '-CRLfile', join(dir.dir, 'crl.pem'), join(dir.dir, 'cert.pem')]).then(
        (o) => ({ ok: true, output: `${o.stdout}${o.stderr}` }),
        (e: { stdout?: string; stderr?: string }) => ({ ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
      );
      return r;
    } finally {
      dir.cleanup();
    }
  }

  it("core-cert: core presents the new certificate on new handshakes after rotate, and after retire the old one's key is gone and its serial revoked, with 0 failed requests", async () => {
    const oldCert = await readIn('core', `${CORE_DIR}/server.crt`);
    const before = await probe(BROKER_FILES);
    assert.equal(before.status, 401, `the broker's files let a client in: ${JSON.stringify(before)}`);
    assert.equal(before.serverSerial, serialOf(oldCert), 'core presents the certificate of its TLS_CERT_FILE');
    const reloads = await countLog('core', 'server certificate reloaded');
    const l = await startLoad();

    await keygen('rotate', 'core-cert');
    const newCert = await readIn('core', `${CORE_DIR}/server.crt`);
    assert.notEqual(serialOf(newCert), serialOf(oldCert));
    assert.equal(await readIn('core', `${CORE_DIR}/server.crt.previous`), oldCert, 'the old certificate is kept as .previous during the overlap');
    await waitForLog('core', 'server certificate reloaded', (x) => x.serial === serialOf(newCert), 1);
    assert.equal(await countLog('core', 'server certificate reloaded'), reloads + 1);
    const after = await probe(BROKER_FILES);
    assert.equal(after.status, 401);
    assert.equal(after.serverSerial, serialOf(newCert), 'new handshakes get the new certificate');
    assert.equal(await expiryGauge('core', 'server'), notAfter(newCert), "core's expiry gauge reports the certificate it now serves");
    await moreRequests(l, 'after the rotation');

    const identityReloads = await countLog('core', 'client identity reloaded');
    await keygen('retire', 'core-cert');
    assert.equal(await existsIn('core', `${CORE_DIR}/server.key.previous`), false, 'the old key is deleted');
    assert.equal(await existsIn('core', `${CORE_DIR}/server.crt.previous`), false);
    assert.equal(await existsIn('core', `${CORE_DIR}/server.key`), true, 'positive control: the current key is there');
    const ca = await readIn('core', `${CORE_DIR}/ca.crt`);
    const crl = await readIn('core', `${CORE_DIR}/ca.crl`);
    const revoked = (await readCrls(crl, ca)).revoked;
    assert.ok(revoked.has(serialOf(oldCert)), 'the old serial is on the CRL');
    assert.ok(!revoked.has(serialOf(newCert)), 'the new one is not');
    const oldVerdict = await crlVerify(oldCert, ca, crl);
    assert.equal(oldVerdict.ok, false, `a CRL-checking verifier refuses the old certificate: ${oldVerdict.output}`);
    assert.match(oldVerdict.output, /revoked/);
    const newVerdict = await crlVerify(newCert, ca, crl);
    assert.equal(newVerdict.ok, true, `and accepts the new one: ${newVerdict.output}`);
    // Core reloads the CRL (its own old serial on it) and keeps serving the new pair.
    await waitForLog('core', 'client identity reloaded', () => true, identityReloads + 1);
    assert.equal((await probe(BROKER_FILES)).serverSerial, serialOf(newCert));
    await moreRequests(l, 'after retire');
    await stopLoad(l);
  });

  it('broker-cert: the broker moves to its new client certificate with both accepted during the overlap, and after retire core refuses the old one, with 0 failed requests', async () => {
    const oldTls = { ca: await readIn('broker', `${BROKER_DIR}/ca.crt`), cert: await readIn('broker', `${BROKER_DIR}/client.crt`), key: await readIn('broker', `${BROKER_DIR}/client.key`) };
    const oldSerial = serialOf(oldTls.cert);
    // The broker connects to core when it has something to store.
    const l = await startLoad();
    await waitForLog('core', 'client connection', (x) => x.serial === oldSerial && x.broker === 'broker');

    await keygen('rotate', 'broker-cert');
    const newCert = await readIn('broker', `${BROKER_DIR}/client.crt`);
    const newSerial = serialOf(newCert);
    assert.notEqual(newSerial, oldSerial);
    assert.equal(await readIn('broker', `${BROKER_DIR}/client.crt.previous`), oldTls.cert);
    await waitForLog('broker', 'core client certificate reloaded', (x) => x.serial === newSerial);
    // Before any probe presents the new certificate: this connection is the broker's.
    await waitForLog('core', 'client connection', (x) => x.serial === newSerial && x.broker === 'broker' && x.refused === undefined);
    const overlap = await probe(oldTls);
    assert.equal(overlap.status, 401, `during the overlap core still lets the old certificate in: ${JSON.stringify(overlap)}`);
    await moreRequests(l, 'on the new certificate');

    const identityReloads = await countLog('core', 'client identity reloaded');
    await keygen('retire', 'broker-cert');
    assert.equal(await existsIn('broker', `${BROKER_DIR}/client.key.previous`), false);
    await waitForLog('core', 'client identity reloaded', () => true, identityReloads + 1);
    const refused = await probe(oldTls);
    assert.notEqual(refused.status, 401, `core refuses the retired certificate: ${JSON.stringify(refused)}`);
    assert.ok(refused.error !== undefined || refused.status === 403, JSON.stringify(refused));
    const control = await probe({ ...oldTls, cert: newCert, key: await readIn('broker', `${BROKER_DIR}/client.key`) });
    assert.equal(control.status, 401, `positive control: the new certificate, from the same place, is let in: ${JSON.stringify(control)}`);
    await moreRequests(l, 'after retire');
    await stopLoad(l);
  });

  it('ca: both sides trust [new, old] after rotate while core and the broker move to certificates of the new CA; after retire only the new CA is trusted and the old CA\'s certificate is refused, with 0 failed requests', async () => {
    const oldCa = await readIn('broker', `${BROKER_DIR}/ca.crt`);
    assert.equal(pemCertificates(oldCa).length, 1);
    const oldTls = { ca: oldCa, cert: await readIn('broker', `${BROKER_DIR}/client.crt`), key: await readIn('broker', `${BROKER_DIR}/client.key`) };
    const oldServerSerial = serialOf(await readIn('core', `${CORE_DIR}/server.crt`));
    const l = await startLoad();

    await keygen('rotate', 'ca');
    const brokerBundle = await readIn('broker', `${BROKER_DIR}/ca.crt`);
    const coreBundle = await readIn('core', `${CORE_DIR}/ca.crt`);
    assert.equal(pemCertificates(brokerBundle).length, 2, 'the broker trusts [new, old]');
    assert.equal(pemCertificates(coreBundle).length, 2, 'core trusts [new, old]');
    assert.equal(pemCertificates(brokerBundle)[1], pemCertificates(oldCa)[0], 'the old CA second');
    const newCa = new X509Certificate(pemCertificates(brokerBundle)[0]!);
    const serverCert = await readIn('core', `${CORE_DIR}/server.crt`);
    const clientCert = await readIn('broker', `${BROKER_DIR}/client.crt`);
    assert.ok(new X509Certificate(serverCert).checkIssued(newCa), "core's certificate is the new CA's");
    assert.ok(new X509Certificate(clientCert).checkIssued(newCa), "the broker's certificate is the new CA's");
    await waitForLog('core', 'server certificate reloaded', (x) => x.serial === serialOf(serverCert));
    await waitForLog('broker', 'core client certificate reloaded', (x) => x.serial === serialOf(clientCert) && x.caCertificates === 2);
    await waitForLog('core', 'client connection', (x) => x.serial === serialOf(clientCert) && x.refused === undefined);
    const presented = await probe(BROKER_FILES);
    assert.equal(presented.status, 401);
    assert.equal(presented.serverSerial, serialOf(serverCert), 'core presents its certificate of the new CA');
    assert.notEqual(presented.serverSerial, oldServerSerial);
    const overlap = await probe({ ...oldTls, ca: brokerBundle });
    assert.equal(overlap.status, 401, `during the overlap the old CA's client certificate is let in: ${JSON.stringify(overlap)}`);
    // The gauges report the files in effect: the new leaves, and the bundle's earliest CA (the old one).
    assert.equal(await expiryGauge('broker', 'client'), notAfter(clientCert));
    assert.equal(await expiryGauge('broker', 'ca'), notAfter(brokerBundle));
    assert.equal(await expiryGauge('core', 'server'), notAfter(serverCert));
    assert.equal(await expiryGauge('core', 'ca'), notAfter(coreBundle));
    await moreRequests(l, 'under the new CA');

    const identityReloads = await countLog('core', 'client identity reloaded');
    await keygen('retire', 'ca');
    assert.equal(pemCertificates(await readIn('broker', `${BROKER_DIR}/ca.crt`)).length, 1, 'the broker trusts the new CA alone');
    assert.equal(pemCertificates(await readIn('core', `${CORE_DIR}/ca.crt`)).length, 1, 'core trusts the new CA alone');
    await waitForLog('core', 'client identity reloaded', () => true, identityReloads + 1);
    // The broker's certificate stays; the bundle shrinks. Matching the serial too keeps this from
    // taking the broker-cert test's reload lines (also one CA) on this same stack for this one.
    await waitForLog('broker', 'core client certificate reloaded', (x) => x.serial === serialOf(clientCert) && x.caCertificates === 1);
    assert.equal(await expiryGauge('broker', 'ca'), notAfter(newCa.toString()), "the broker's CA gauge reports the new CA alone");
    assert.equal(await expiryGauge('core', 'ca'), notAfter(newCa.toString()), "core's CA gauge reports the new CA alone");
    const refused = await probe({ ...oldTls, ca: brokerBundle });
    assert.notEqual(refused.status, 401, `core refuses a certificate of the retired CA: ${JSON.stringify(refused)}`);
    assert.ok(refused.error !== undefined || refused.status === 403, JSON.stringify(refused));
    const control = await probe({ ca: brokerBundle, cert: clientCert, key: await readIn('broker', `${BROKER_DIR}/client.key`) });
    assert.equal(control.status, 401, `positive control: the new CA's certificate, from the same place, is let in: ${JSON.stringify(control)}`);
    await moreRequests(l, 'after retire');
    await stopLoad(l);
  });
});
