import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { env, intItem, parseEnv, strItem } from '../common/config/env';
import { ConfigError } from '../common/errors/config-error';
import { BROKER_NAME, GATEWAY_ID } from '../common/ids/names';
import { staticSequenceProblem } from '../common/knock/sequence';
import { DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE, guessFloorProblem } from '../common/knock/strength';
import { createLogger } from '../common/log/logger';
import { createCa, issueCertificate, type PemPair } from '../common/pki/certificates';
import { writeIfAbsent } from '../common/pki/files';
import { fingerprintOfKey, generateSshKeyPair, publicKeyLine } from '../common/pki/ssh-keys';
import { sha256Hex } from '../common/pki/digest';
import { firstDataKeySet, formatDataKeyFile } from '../common/pki/data-key-file';
import { certificateCommonName, certificateSerial } from '../common/pki/crl';
import { brokerRestrictionProblems, loadBrokers, saveBrokers, writeIdentityFiles, type BrokerRecord } from './brokers';
import { keyLayout, type KeyLayout } from './layout';
import { k8sSecretList, parseK8sSecretArgs } from './k8s-secrets';

const keygenEnv = {
  KEYGEN_OUT: env.absPath('/keys'),
  /** Where this gateway's files go under KEYGEN_OUT: one directory per gateway of a fleet. */
  KEYGEN_GATEWAY_SUBDIR: env.str({ def: 'gateway', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'a directory name' }),
  GATEWAY_ID: env.str({ def: 'gw1', pattern: GATEWAY_ID, expected: 'a gateway id' }),
  GATEWAY_HOST: env.str({ def: 'gateway', pattern: /^[A-Za-z0-9.:-]{1,253}$/, expected: 'a host name or address' }),
  SSH_PORT: env.port(2222),
  CORE_NAMES: env.list(strItem(/^[A-Za-z0-9.:-]{1,253}$/), { def: 'core', expected: 'DNS names for core', min: 1 }),
  /** The broker this run issues (or keeps) a key pair and client certificate for. */
  BROKER_NAME: env.str({ def: 'broker', pattern: BROKER_NAME, expected: 'a broker name (letters, digits, . and -, at most 64)' }),
  /** Where that broker's files go under KEYGEN_OUT: one directory per broker. */
  KEYGEN_BROKER_SUBDIR: env.str({ def: 'broker', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'a directory name' }),
  /** Restrictions on that broker's key in every gateway's authorized_keys (OpenSSH from= and expiry-time=). */
  BROKER_FROM: env.optional(env.str({ expected: 'an OpenSSH pattern-list' })),
  BROKER_KEY_EXPIRY: env.optional(env.str({ expected: 'YYYYMMDD[HHMM[SS]][Z]' })),
  /** The gateway's QUEUE_PORT: the one port a broker key may ask to have forwarded. */
  QUEUE_PORT: env.port(6379),
  BROKER_SECRETS_DIR: env.absPath('/etc/nonstop/broker'),
  KNOCK_MODE: env.oneOf(['static', 'time'], 'time'),
  KNOCK_SEQUENCE: env.optional(env.list(intItem(1, 65535), { expected: 'comma-separated TCP ports', min: 2, max: 32 })),
  KNOCK_LENGTH: env.int({ min: 2, max: 32, def: DEFAULT_KNOCK_LENGTH }),
  KNOCK_PORT_RANGE: env.str({ def: DEFAULT_KNOCK_PORT_RANGE, pattern: /^\d{1,5}-\d{1,5}$/, expected: 'START-END' }),
  KNOCK_PERIOD_SECONDS: env.int({ min: 5, max: 3600, def: 30 }),
};

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
 *   nonstop-keygen k8s-secrets [--prefix P] [--namespace NS]
 *                                        print the keys as Kubernetes Secrets (a JSON List for
 *                                        `kubectl apply -f -`), one per tier, for the Helm chart
 */
async function main(): Promise<void> {
  const log = createLogger('keygen');
  const e = parseEnv(keygenEnv);
  const [command, ...args] = process.argv.slice(2);
  if (command === 'revoke-broker') return revokeBroker(e, args, log);
  if (command === 'k8s-secrets') {
    const list = k8sSecretList(keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR, e.KEYGEN_BROKER_SUBDIR), parseK8sSecretArgs(args));
    process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
    return;
  }
  if (command !== undefined) throw new ConfigError([`arguments: expected none, "revoke-broker NAME" or "k8s-secrets [--prefix P] [--namespace NS]", got ${JSON.stringify(process.argv.slice(2).join(' '))}`]);
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
  log.info('keys ready', { created: created.length, gatewayHostKey: fingerprintOfKey(readFileSync(L.gateway.hostKey, 'utf8')), broker: e.BROKER_NAME, brokers: updated.filter((b) => !b.revokedAt).map((b) => b.name) });
}

/**
 * Revokes a broker: its certificate goes on the CA's revocation list, its name off core's
 * list, its key out of this gateway's authorized_keys. Core and the gateway follow their
 * files, so within seconds core refuses the certificate (open connections included) and
 * the gateway closes the broker's tunnel. Other gateways of a fleet get the new
 * authorized_keys when keygen next runs for them (or when it is copied to them).
 */
async function revokeBroker(e: ReturnType<typeof parseEnv<typeof keygenEnv>>, args: string[], log: ReturnType<typeof createLogger>): Promise<void> {
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

function writeGatewaysFile(L: KeyLayout, e: ReturnType<typeof parseEnv<typeof keygenEnv>>): void {
  const knock =
    e.KNOCK_MODE === 'static'
      ? { mode: 'static', ports: e.KNOCK_SEQUENCE }
      : { mode: 'time', secretFile: `${e.BROKER_SECRETS_DIR}/knock-${e.GATEWAY_ID}.secret`, length: e.KNOCK_LENGTH, portRange: e.KNOCK_PORT_RANGE, periodSeconds: e.KNOCK_PERIOD_SECONDS };
  const entry = {
    id: e.GATEWAY_ID,
    host: e.GATEWAY_HOST,
    sshPort: e.SSH_PORT,
    hostKeyFingerprint: fingerprintOfKey(readFileSync(L.gateway.hostKey, 'utf8')),
    queuePasswordSha256: sha256Hex(readFileSync(L.gateway.queuePassword, 'utf8').trim()),
    knock,
  };
  // One broker serves a fleet: this gateway's entry replaces its old one, the others stay.
  let others: { id?: unknown }[] = [];
  if (existsSync(L.broker.gatewaysFile)) {
    const current = JSON.parse(readFileSync(L.broker.gatewaysFile, 'utf8')) as { gateways?: { id?: unknown }[] };
    others = (current.gateways ?? []).filter((g) => g.id !== e.GATEWAY_ID);
  }
  writeFileSync(L.broker.gatewaysFile, `${JSON.stringify({ gateways: [...others, entry] }, null, 2)}\n`, { mode: 0o644 });
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`keygen: config error: ${err.problems.join('; ')}\n`);
  else process.stderr.write(`keygen: ${(err as Error).message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
