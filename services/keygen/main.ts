import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from '../common/config/env';
import { ConfigError } from '../common/errors/config-error';
import { BROKER_NAME } from '../common/ids/names';
import { staticSequenceProblem } from '../common/knock/sequence';
import { guessFloorProblem } from '../common/knock/strength';
import { createLogger } from '../common/log/logger';
import { createCa, issueCertificate, type PemPair } from '../common/pki/certificates';
import { previousOf, writeIfAbsent } from '../common/pki/files';
import { fingerprintOfKey, generateSshKeyPair, publicKeyLine } from '../common/pki/ssh-keys';
import { firstDataKeySet, formatDataKeyFile } from '../common/pki/data-key-file';
import { certificateCommonName, certificateSerial } from '../common/pki/crl';
import { brokerRestrictionProblems, loadBrokers, saveBrokers, writeIdentityFiles, type BrokerRecord } from './brokers';
import { keyLayout } from './layout';
import { k8sSecretList, parseK8sSecretArgs } from './k8s-secrets';
import { keygenEnv, type KeygenEnv } from './env';
import { runRotation } from './rotation';
import './rotation/all';
import { writeGatewaysFile } from './gateways-file';
import { deploymentCas } from './crl-file';
import { caSerialOf } from './rotation/tls';
import { refreshAllKeyDates } from './key-dates';


/**
 * The one-shot service of the compose demo: creates every key, certificate and password
 * the three tiers need, on first `up`, into per-tier volumes. Idempotent: anything that
 * exists is kept (a key is never replaced behind a running deployment's back); only the
 * files derived from the rest are rewritten: the broker's gateways.json, the gateway's
 * authorized_keys, core's list of brokers and the CA's revocation list.
 *
 *   nonstop-keygen                       issue what is missing for GATEWAY_ID and BROKER_NAME
 *   nonstop-keygen revoke-broker NAME    revoke a broker: its certificate on the CRL, its name
 *                                        off core's list, its key out of authorized_keys
 *   nonstop-keygen rotate WHAT [ARGS]   create the next key of a kind; old and new both accepted
 *   nonstop-keygen retire WHAT [ARGS]   drop the old one (services/keygen/rotation.ts)
 *   nonstop-keygen k8s-secrets [--prefix P] [--namespace NS]
 *                                        print the keys as Kubernetes Secrets (a JSON List for
 *                                        `kubectl apply -f -`), one per tier, for the Helm chart
 */
async function main(): Promise<void> {
  const log = createLogger('keygen');
  const e = parseEnv(keygenEnv);
  const [command, ...args] = process.argv.slice(2);
  if (command === 'revoke-broker') return revokeBroker(e, args, log);
  if (command === 'rotate' || command === 'retire') return runRotation(command, args, { layout: keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR, e.KEYGEN_BROKER_SUBDIR), env: e, log });
  if (command === 'k8s-secrets') {
    const list = k8sSecretList(keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR, e.KEYGEN_BROKER_SUBDIR), parseK8sSecretArgs(args));
    process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
    return;
  }
  if (command !== undefined) throw new ConfigError([`arguments: expected none, "revoke-broker NAME", "rotate WHAT", "retire WHAT" or "k8s-secrets [--prefix P] [--namespace NS]", got ${JSON.stringify(process.argv.slice(2).join(' '))}`]);
  const restrictionProblems = brokerRestrictionProblems(e.BROKER_FROM, e.BROKER_KEY_EXPIRY);
  if (restrictionProblems.length > 0) throw new ConfigError(restrictionProblems);
  if (e.KNOCK_MODE === 'static') {
    const why = e.KNOCK_SEQUENCE ? staticSequenceProblem(e.KNOCK_SEQUENCE) : 'required when KNOCK_MODE=static';
    if (why) throw new ConfigError([`KNOCK_SEQUENCE: ${why}`]);
  } else {
    // The gateway refuses these settings too; refusing here keeps a weak pair out of the broker's gateways.json.
    const [start, end] = e.KNOCK_PORT_RANGE.split('-').map(Number) as [number, number];
    const weak = end - start + 1 >= e.KNOCK_LENGTH * 2 ? guessFloorProblem(end - start + 1, e.KNOCK_LENGTH) : `the range must hold at least ${e.KNOCK_LENGTH * 2} ports`;
    if (weak) throw new ConfigError([`KNOCK_LENGTH=${e.KNOCK_LENGTH} with KNOCK_PORT_RANGE=${JSON.stringify(e.KNOCK_PORT_RANGE)}: ${weak}`]);
  }
  const L = keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR, e.KEYGEN_BROKER_SUBDIR);
  const created: string[] = [];
  const put = (path: string, text: string, mode = 0o600): void => {
    if (writeIfAbsent(path, text, mode)) created.push(path);
  };

  // Private CA: signs core's server certificate and the broker's client certificate.
  let ca: PemPair;
  if (existsSync(L.pki.caCert) && existsSync(L.pki.caKey)) {
    ca = { certPem: readFileSync(L.pki.caCert, 'utf8'), keyPem: readFileSync(L.pki.caKey, 'utf8') };
  } else {
    ca = await createCa('nonstop deployment CA');
    put(L.pki.caKey, ca.keyPem);
    put(L.pki.caCert, ca.certPem, 0o644);
  }
  put(L.core.caCert, ca.certPem, 0o644);
  put(L.broker.caCert, ca.certPem, 0o644);
  if (!existsSync(L.core.serverCert)) {
    const server = await issueCertificate(ca, { commonName: e.CORE_NAMES[0]!, altNames: e.CORE_NAMES, usage: 'server' });
    put(L.core.serverKey, server.keyPem);
    put(L.core.serverCert, server.certPem, 0o644);
  }
  // The first key core encrypts records with; nonstop-admin keys rotate adds the next ones.
  put(L.core.dataKeys, formatDataKeyFile(firstDataKeySet()));
  // This broker's identity, its own: a client certificate naming it, an SSH key pair.
  const brokers = loadBrokers(L.pki.brokers);
  const known = brokers.find((b) => b.name === e.BROKER_NAME);
  if (known?.revokedAt) throw new ConfigError([`BROKER_NAME=${e.BROKER_NAME}: revoked at ${known.revokedAt}; a broker coming back needs a new name (and a new KEYGEN_BROKER_SUBDIR)`]);
  if (existsSync(L.broker.clientCert)) {
    const holder = certificateCommonName(readFileSync(L.broker.clientCert, 'utf8'));
    if (holder !== e.BROKER_NAME) throw new ConfigError([`KEYGEN_BROKER_SUBDIR=${e.KEYGEN_BROKER_SUBDIR}: holds the identity of broker ${JSON.stringify(holder)}, not of BROKER_NAME=${e.BROKER_NAME}; each broker needs a directory of its own`]);
  } else {
    const client = await issueCertificate(ca, { commonName: e.BROKER_NAME, usage: 'client' });
    put(L.broker.clientKey, client.keyPem);
    put(L.broker.clientCert, client.certPem, 0o644);
  }

  // SSH: the gateway's host key (pinned by the broker), the broker's key (authorized by the gateway).
  if (!existsSync(L.gateway.hostKey)) put(L.gateway.hostKey, generateSshKeyPair(`gateway-${e.GATEWAY_ID}`).privateKey);
  if (!existsSync(L.broker.sshKey)) put(L.broker.sshKey, generateSshKeyPair(e.BROKER_NAME).privateKey);
  const record: BrokerRecord = {
    name: e.BROKER_NAME,
    sshPublicKey: publicKeyLine(readFileSync(L.broker.sshKey, 'utf8'), e.BROKER_NAME),
    certSerial: certificateSerial(readFileSync(L.broker.clientCert, 'utf8')),
    // Kept across runs: the CA that signed it (retire ca checks it) and the serials retired by rotation (on the CRL).
    ...caSerialOf(readFileSync(L.broker.clientCert, 'utf8'), deploymentCas(L, ca)),
    // During a broker key rotation's overlap (rotation/broker-key.ts) the gateways accept its previous key too.
    ...(existsSync(previousOf(L.broker.sshKey)) ? { previousSshPublicKey: publicKeyLine(readFileSync(previousOf(L.broker.sshKey), 'utf8'), e.BROKER_NAME) } : {}),
    ...(e.BROKER_FROM !== undefined ? { from: e.BROKER_FROM } : {}),
    ...(e.BROKER_KEY_EXPIRY !== undefined ? { expiryTime: e.BROKER_KEY_EXPIRY } : {}),
  };
  const keyOwner = brokers.find((b) => b.name !== record.name && b.sshPublicKey.split(' ')[1] === record.sshPublicKey.split(' ')[1]);
  if (keyOwner) throw new ConfigError([`KEYGEN_BROKER_SUBDIR=${e.KEYGEN_BROKER_SUBDIR}: its SSH key is broker ${keyOwner.name}'s; each broker needs a directory of its own`]);
  const others = brokers.filter((b) => b.name !== record.name);
  const updated = known ? brokers.map((b) => (b.name === record.name ? record : b)) : [...others, record];
  saveBrokers(L.pki.brokers, updated);
  // Derived from every broker issued, so a gateway set up later authorizes them all.
  await writeIdentityFiles(L, updated, ca, e.QUEUE_PORT);

  // The gateway's queue password; the broker only ever sees its SHA-256.
  put(L.gateway.queuePassword, randomBytes(32).toString('base64url'));
  if (e.KNOCK_MODE === 'time') {
    const secret = randomBytes(32).toString('base64url');
    put(L.gateway.knockSecret, secret);
    put(L.broker.knockSecret(e.GATEWAY_ID), readFileSync(L.gateway.knockSecret, 'utf8'));
  }

  writeGatewaysFile(L, e);
  refreshAllKeyDates(L, e.KEY_LIFETIME_DAYS, log);
  log.info('keys ready', { created: created.length, gatewayHostKey: fingerprintOfKey(readFileSync(L.gateway.hostKey, 'utf8')), broker: e.BROKER_NAME, brokers: updated.filter((b) => !b.revokedAt).map((b) => b.name) });
}

/**
 * Revokes a broker: its certificate goes on the CA's revocation list, its name off core's
 * list, its key out of this gateway's authorized_keys. Core and the gateway follow their
 * files, so within seconds core refuses the certificate (open connections included) and
 * the gateway closes the broker's tunnel. Other gateways of a fleet get the new
 * authorized_keys when keygen next runs for them (or when it is copied to them).
 */
async function revokeBroker(e: KeygenEnv, args: string[], log: ReturnType<typeof createLogger>): Promise<void> {
  const [name, ...extra] = args;
  if (name === undefined || extra.length > 0 || !BROKER_NAME.test(name)) throw new ConfigError([`revoke-broker: expected one broker name, got ${JSON.stringify(args.join(' '))}`]);
  const L = keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR, e.KEYGEN_BROKER_SUBDIR);
  if (!existsSync(L.pki.caCert) || !existsSync(L.pki.caKey)) throw new ConfigError([`KEYGEN_OUT=${e.KEYGEN_OUT}: no CA in ${L.pki.dir}`]);
  const ca = { certPem: readFileSync(L.pki.caCert, 'utf8'), keyPem: readFileSync(L.pki.caKey, 'utf8') };
  const brokers = loadBrokers(L.pki.brokers);
  const target = brokers.find((b) => b.name === name);
  if (!target) throw new ConfigError([`revoke-broker: no broker named ${JSON.stringify(name)} in ${L.pki.brokers} (known: ${brokers.map((b) => b.name).join(', ') || 'none'})`]);
  const updated = brokers.map((b) => (b.name === name && !b.revokedAt ? { ...b, revokedAt: new Date().toISOString() } : b));
  saveBrokers(L.pki.brokers, updated);
  await writeIdentityFiles(L, updated, ca, e.QUEUE_PORT);
  log.info('broker revoked', { broker: name, certSerial: target.certSerial, brokers: updated.filter((b) => !b.revokedAt).map((b) => b.name) });
}


main().catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`keygen: config error: ${err.problems.join('; ')}\n`);
  else process.stderr.write(`keygen: ${(err as Error).message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
