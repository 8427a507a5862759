import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../../common/errors/config-error';
import { createCa, issueCertificate, type PemPair } from '../../common/pki/certificates';
import { certificateCommonName, certificateSerial, normalizeSerial } from '../../common/pki/crl';
import { loadBrokers, saveBrokers, writeIdentityFiles, type BrokerRecord } from '../brokers';
import { deploymentCas, loadRetired, saveRetired, writeCrlFile } from '../crl-file';
import { previousOf, replaceFile } from '../../common/pki/files';
import type { KeyLayout } from '../layout';
import { noArguments, refuseDuringOverlap, refuseWithoutOverlap, registerRotation, removePrevious, type RotationContext } from '../rotation';

/**
 * Rotation of the deployment's TLS: core's server certificate (`core-cert`), a broker's
 * client certificate (`broker-cert`, for BROKER_NAME in KEYGEN_BROKER_SUBDIR) and the private
 * CA (`ca`). The protocol of services/keygen/rotation.ts: during an overlap the old file is
 * `<path>.previous` beside the new one, written atomically; `rotate` with a `.previous`
 * present, or `retire` without one, refuses with one line and changes nothing.
 *
 * core-cert: the presenting side (core) cannot fall back, and the checking side (each
 *   broker) trusts the CA, not the certificate, so it already accepts the new one: rotate
 *   issues it under the current CA and core serves it on its next handshakes (it follows
 *   TLS_CERT_FILE/TLS_KEY_FILE; open connections keep theirs). retire removes the old pair's
 *   `.previous` — the only copy of its key, so nothing can present it again — and puts its
 *   serial on the CRL (pki/retired.json): the certificate stays CA-signed until its notAfter,
 *   and any checker that reads the CRL refuses it.
 * broker-cert: core accepts any unrevoked certificate of its CA naming a broker on its list,
 *   so old and new (same CN) are both accepted from rotate on; the broker follows its files
 *   and moves new requests to a pool with the new certificate, closing the old pool once its
 *   requests are done. retire puts the old serial on the CRL (pki/brokers.json keeps it); core
 *   then cuts any connection still on it — by then none should be left.
 * ca: rotate makes a new CA (old → pki/ca.*.previous); the checking sides' files are written
 *   first — the CRL file (a list per CA), then the CA bundles [new, old] of core and of every
 *   broker directory under KEYGEN_OUT — and, once the followers have had time to load them,
 *   core's server certificate and this broker's client certificate are reissued under the
 *   new CA. Other brokers move with `rotate broker-cert` for them. retire refuses while any
 *   broker not revoked still holds a certificate of the old CA; otherwise the bundles hold
 *   the new CA alone, then the CRL file its list alone, then the old CA is deleted.
 */

/**
 * How long `rotate ca` waits between writing the CA bundles and reissuing the certificates
 * they must verify: core and the brokers poll their files every 2 s (CLIENT_IDENTITY_POLL_MS,
 * CORE_TLS_POLL_MS), so three of their periods and a margin. A broker that had not loaded the
 * bundle would refuse core's new server certificate.
 */
export const FOLLOWERS_RELOAD_WAIT_MS = 7000;

const pair = (certPath: string, keyPath: string): PemPair => ({ certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') });

function currentCa(L: KeyLayout): PemPair {
  if (!existsSync(L.pki.caCert) || !existsSync(L.pki.caKey)) throw new ConfigError([`KEYGEN_OUT: no CA in ${L.pki.dir}; run nonstop-keygen first`]);
  return pair(L.pki.caCert, L.pki.caKey);
}

/** Old pair → `.previous`, new pair in its place: key first, so the pair is mismatched only until the certificate lands (followers wait for a match). */
function replacePair(certPath: string, keyPath: string, next: PemPair, keepPrevious: boolean): void {
  if (keepPrevious) {
    replaceFile(previousOf(keyPath), readFileSync(keyPath, 'utf8'), 0o600);
    replaceFile(previousOf(certPath), readFileSync(certPath, 'utf8'), 0o644);
  }
  replaceFile(keyPath, next.keyPem, 0o600);
  replaceFile(certPath, next.certPem, 0o644);
}

/** The CA that signed `certPem` among `cas`, or undefined. */
export function issuerAmong(certPem: string, cas: readonly PemPair[]): PemPair | undefined {
  const cert = new X509Certificate(certPem);
  return cas.find((ca) => {
    const c = new X509Certificate(ca.certPem);
    return cert.checkIssued(c) && cert.verify(c.publicKey);
  });
}

/** The broker directories under KEYGEN_OUT (those holding a client certificate), each of which trusts the CA bundle. */
function brokerDirs(root: string): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'client.crt')))
    .map((d) => join(root, d.name));
}

/** The CA bundle core and the brokers trust: newest first. */
export const caBundle = (cas: readonly PemPair[]): string => cas.map((c) => c.certPem.trimEnd() + '\n').join('');

/** Writes the bundle in every file that trusts the CA: core's CLIENT_CA_FILE and each broker's CORE_CA_FILE. */
function writeBundles(ctx: RotationContext, bundle: string): void {
  replaceFile(ctx.layout.core.caCert, bundle, 0o644);
  for (const dir of brokerDirs(ctx.env.KEYGEN_OUT)) replaceFile(join(dir, 'ca.crt'), bundle, 0o644);
}

function thisBroker(ctx: RotationContext): { brokers: BrokerRecord[]; record: BrokerRecord } {
  const L = ctx.layout;
  const brokers = loadBrokers(L.pki.brokers);
  const record = brokers.find((b) => b.name === ctx.env.BROKER_NAME);
  if (!record) throw new ConfigError([`BROKER_NAME=${ctx.env.BROKER_NAME}: no such broker in ${L.pki.brokers}`]);
  if (record.revokedAt) throw new ConfigError([`BROKER_NAME=${ctx.env.BROKER_NAME}: revoked at ${record.revokedAt}`]);
  if (!existsSync(L.broker.clientCert)) throw new ConfigError([`KEYGEN_BROKER_SUBDIR=${ctx.env.KEYGEN_BROKER_SUBDIR}: no client certificate`]);
  const holder = certificateCommonName(readFileSync(L.broker.clientCert, 'utf8'));
  if (holder !== record.name) throw new ConfigError([`KEYGEN_BROKER_SUBDIR=${ctx.env.KEYGEN_BROKER_SUBDIR}: holds the certificate of ${JSON.stringify(holder)}, not of BROKER_NAME=${record.name}`]);
  return { brokers, record };
}

async function issueServer(ctx: RotationContext, ca: PemPair): Promise<PemPair> {
  return issueCertificate(ca, { commonName: ctx.env.CORE_NAMES[0]!, altNames: ctx.env.CORE_NAMES, usage: 'server' });
}

registerRotation('core-cert', {
  describe: "core's server certificate",
  async rotate(ctx) {
    noArguments('core-cert', ctx, 'core is KEYGEN_OUT/core, its names CORE_NAMES');
    const L = ctx.layout;
    refuseDuringOverlap('core-cert', L.core.serverCert);
    const ca = currentCa(L);
    const previousSerial = certificateSerial(readFileSync(L.core.serverCert, 'utf8'));
    const next = await issueServer(ctx, ca);
    // The checking side (each broker) trusts the CA that signed it already: nothing to write first.
    replacePair(L.core.serverCert, L.core.serverKey, next, true);
    ctx.log.info('core certificate rotated: core serves the new one from its next poll', { serial: certificateSerial(next.certPem), previousSerial });
  },
  async retire(ctx) {
    noArguments('core-cert', ctx, 'core is KEYGEN_OUT/core, its names CORE_NAMES');
    const L = ctx.layout;
    refuseWithoutOverlap('core-cert', L.core.serverCert);
    const serial = certificateSerial(readFileSync(previousOf(L.core.serverCert), 'utf8'));
    const retired = loadRetired(L);
    if (!retired.some((r) => normalizeSerial(r.serial) === serial)) saveRetired(L, [...retired, { serial, role: 'server', retiredAt: new Date().toISOString() }]);
    await writeCrlFile(L, loadBrokers(L.pki.brokers), deploymentCas(L, currentCa(L)));
    removePrevious(L.core.serverCert, L.core.serverKey);
    ctx.log.info('core certificate retired: its key deleted, its serial on the CRL', { serial });
  },
});

registerRotation('broker-cert', {
  describe: "BROKER_NAME's client certificate",
  async rotate(ctx) {
    noArguments('broker-cert', ctx, 'the broker is BROKER_NAME/KEYGEN_BROKER_SUBDIR');
    const L = ctx.layout;
    refuseDuringOverlap('broker-cert', L.broker.clientCert);
    const { brokers, record } = thisBroker(ctx);
    const ca = currentCa(L);
    const cas = deploymentCas(L, ca);
    // The checking side first: core already accepts both (same CA, same name); the broker's
    // own CA file is brought to the current bundle in case it missed a CA rotation.
    replaceFile(L.broker.caCert, caBundle(cas), 0o644);
    const next = await issueCertificate(ca, { commonName: record.name, usage: 'client' });
    const serial = certificateSerial(next.certPem);
    replacePair(L.broker.clientCert, L.broker.clientKey, next, true);
    saveBrokers(L.pki.brokers, brokers.map((b) => (b.name === record.name ? { ...b, certSerial: serial, caSerial: certificateSerial(ca.certPem) } : b)));
    ctx.log.info('broker certificate rotated: the broker moves to it from its next poll', { broker: record.name, serial, previousSerial: record.certSerial });
  },
  async retire(ctx) {
    noArguments('broker-cert', ctx, 'the broker is BROKER_NAME/KEYGEN_BROKER_SUBDIR');
    const L = ctx.layout;
    refuseWithoutOverlap('broker-cert', L.broker.clientCert);
    const { brokers, record } = thisBroker(ctx);
    const old = certificateSerial(readFileSync(previousOf(L.broker.clientCert), 'utf8'));
    const retired = loadRetired(L);
    if (!retired.some((r) => normalizeSerial(r.serial) === normalizeSerial(old))) saveRetired(L, [...retired, { serial: old, role: 'client', broker: record.name, retiredAt: new Date().toISOString() }]);
    // The CRL: core refuses the old certificate, and cuts connections still on it.
    await writeIdentityFiles(L, brokers, currentCa(L), ctx.env.QUEUE_PORT);
    removePrevious(L.broker.clientCert, L.broker.clientKey);
    ctx.log.info('broker certificate retired: its serial on the CRL', { broker: record.name, serial: old });
  },
});

registerRotation('ca', {
  describe: 'the deployment CA (then core-cert and this broker-cert under it)',
  async rotate(ctx) {
    noArguments('ca', ctx, 'the CA is KEYGEN_OUT/pki; this broker BROKER_NAME/KEYGEN_BROKER_SUBDIR');
    const L = ctx.layout;
    refuseDuringOverlap('ca', L.pki.caCert);
    refuseDuringOverlap('core-cert', L.core.serverCert);
    refuseDuringOverlap('broker-cert', L.broker.clientCert);
    const { record } = thisBroker(ctx);
    const old = currentCa(L);
    const oldSerial = certificateSerial(old.certPem);
    // Records from before caSerial was kept were all issued by the only CA there was.
    const brokers = loadBrokers(L.pki.brokers).map((b) => (b.caSerial ? b : { ...b, caSerial: oldSerial }));
    saveBrokers(L.pki.brokers, brokers);
    const ca = await createCa(`nonstop deployment CA ${new Date().toISOString()}`);
    replaceFile(previousOf(L.pki.caKey), old.keyPem, 0o600);
    replaceFile(previousOf(L.pki.caCert), old.certPem, 0o644);
    replaceFile(L.pki.caKey, ca.keyPem, 0o600);
    replaceFile(L.pki.caCert, ca.certPem, 0o644);
    const cas = [ca, old];
    // Checking sides first: the CRL file (a list per CA) before the bundles that add the new CA.
    await writeCrlFile(L, brokers, cas);
    writeBundles(ctx, caBundle(cas));
    ctx.log.info('new CA trusted beside the old one; waiting for core and the brokers to load the bundles', { caSerial: certificateSerial(ca.certPem), previousCaSerial: oldSerial, waitMs: FOLLOWERS_RELOAD_WAIT_MS });
    await sleep(FOLLOWERS_RELOAD_WAIT_MS);
    // Presenting sides: the old leaves were the old CA's; they stay valid while it is trusted.
    const server = await issueServer(ctx, ca);
    replacePair(L.core.serverCert, L.core.serverKey, server, false);
    const client = await issueCertificate(ca, { commonName: record.name, usage: 'client' });
    const clientSerial = certificateSerial(client.certPem);
    replacePair(L.broker.clientCert, L.broker.clientKey, client, false);
    saveBrokers(L.pki.brokers, brokers.map((b) => (b.name === record.name ? { ...b, certSerial: clientSerial, caSerial: certificateSerial(ca.certPem) } : b)));
    ctx.log.info('CA rotated: core and this broker hold certificates of the new CA; other brokers move with rotate broker-cert', {
      caSerial: certificateSerial(ca.certPem),
      serverSerial: certificateSerial(server.certPem),
      broker: record.name,
      clientSerial,
      stillOnOldCa: brokers.filter((b) => !b.revokedAt && b.name !== record.name && b.caSerial !== certificateSerial(ca.certPem)).map((b) => b.name),
    });
  },
  async retire(ctx) {
    noArguments('ca', ctx, 'the CA is KEYGEN_OUT/pki; this broker BROKER_NAME/KEYGEN_BROKER_SUBDIR');
    const L = ctx.layout;
    refuseWithoutOverlap('ca', L.pki.caCert);
    const ca = currentCa(L);
    const caSerial = certificateSerial(ca.certPem);
    const brokers = loadBrokers(L.pki.brokers);
    const holders = oldCaHolders(brokers, caSerial);
    if (holders.length > 0) throw new ConfigError([`retire ca: broker(s) ${holders.join(', ')} still hold a certificate of the old CA; run nonstop-keygen rotate broker-cert for each (or revoke-broker) first`]);
    if (!issuerAmong(readFileSync(L.core.serverCert, 'utf8'), [ca])) throw new ConfigError([`retire ca: ${L.core.serverCert} is not signed by the new CA; run nonstop-keygen rotate core-cert first`]);
    // Checking sides: the bundles lose the old CA first, then the CRL file its list.
    writeBundles(ctx, caBundle([ca]));
    await writeCrlFile(L, brokers, [ca]);
    removePrevious(L.pki.caCert, L.pki.caKey);
    ctx.log.info('old CA retired: core and the brokers trust the new CA alone', { caSerial });
  },
});

/** Brokers not revoked whose certificate is not the current CA's (what `retire ca` refuses on). */
export function oldCaHolders(brokers: readonly BrokerRecord[], currentCaSerial: string): string[] {
  return brokers.filter((b) => !b.revokedAt && (b.caSerial === undefined || normalizeSerial(b.caSerial) !== normalizeSerial(currentCaSerial))).map((b) => b.name);
}

/** `{ caSerial }` of the CA among `cas` that signed `certPem`, or nothing when none did. */
export function caSerialOf(certPem: string, cas: readonly PemPair[]): { caSerial?: string } {
  const issuer = issuerAmong(certPem, cas);
  return issuer ? { caSerial: certificateSerial(issuer.certPem) } : {};
}
