import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { env, intItem, parseEnv, strItem } from '../common/config/env';
import { ConfigError } from '../common/errors/config-error';
import { GATEWAY_ID } from '../common/ids/names';
import { staticSequenceProblem } from '../common/knock/sequence';
import { DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE, guessFloorProblem } from '../common/knock/strength';
import { createLogger } from '../common/log/logger';
import { createCa, issueCertificate, type PemPair } from '../common/pki/certificates';
import { writeIfAbsent } from '../common/pki/files';
import { fingerprintOfKey, generateSshKeyPair, publicKeyLine } from '../common/pki/ssh-keys';
import { sha256Hex } from '../common/pki/digest';
import { keyLayout, type KeyLayout } from './layout';

const keygenEnv = {
  KEYGEN_OUT: env.absPath('/keys'),
  /** Where this gateway's files go under KEYGEN_OUT: one directory per gateway of a fleet. */
  KEYGEN_GATEWAY_SUBDIR: env.str({ def: 'gateway', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'a directory name' }),
  GATEWAY_ID: env.str({ def: 'gw1', pattern: GATEWAY_ID, expected: 'a gateway id' }),
  GATEWAY_HOST: env.str({ def: 'gateway', pattern: /^[A-Za-z0-9.:-]{1,253}$/, expected: 'a host name or address' }),
  SSH_PORT: env.port(2222),
  CORE_NAMES: env.list(strItem(/^[A-Za-z0-9.:-]{1,253}$/), { def: 'core', expected: 'DNS names for core', min: 1 }),
  BROKER_NAME: env.str({ def: 'broker', pattern: /^[A-Za-z0-9.-]{1,64}$/, expected: 'a name' }),
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
 * broker's gateways.json, which is derived from the rest, is rewritten.
 */
async function main(): Promise<void> {
  const log = createLogger('keygen');
  const e = parseEnv(keygenEnv);
  if (e.KNOCK_MODE === 'static') {
    const why = e.KNOCK_SEQUENCE ? staticSequenceProblem(e.KNOCK_SEQUENCE) : 'required when KNOCK_MODE=static';
    if (why) throw new ConfigError([`KNOCK_SEQUENCE: ${why}`]);
  } else {
    // The gateway refuses these settings too; refusing here keeps a weak pair out of the broker's gateways.json.
    const [start, end] = e.KNOCK_PORT_RANGE.split('-').map(Number) as [number, number];
    const weak = end - start + 1 >= e.KNOCK_LENGTH * 2 ? guessFloorProblem(end - start + 1, e.KNOCK_LENGTH) : `the range must hold at least ${e.KNOCK_LENGTH * 2} ports`;
    if (weak) throw new ConfigError([`KNOCK_LENGTH=${e.KNOCK_LENGTH} with KNOCK_PORT_RANGE=${JSON.stringify(e.KNOCK_PORT_RANGE)}: ${weak}`]);
  }
  const L = keyLayout(e.KEYGEN_OUT, e.KEYGEN_GATEWAY_SUBDIR);
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
  if (!existsSync(L.broker.clientCert)) {
    const client = await issueCertificate(ca, { commonName: e.BROKER_NAME, usage: 'client' });
    put(L.broker.clientKey, client.keyPem);
    put(L.broker.clientCert, client.certPem, 0o644);
  }

  // SSH: the gateway's host key (pinned by the broker), the broker's key (authorized by the gateway).
  if (!existsSync(L.gateway.hostKey)) put(L.gateway.hostKey, generateSshKeyPair(`gateway-${e.GATEWAY_ID}`).privateKey);
  if (!existsSync(L.broker.sshKey)) put(L.broker.sshKey, generateSshKeyPair(e.BROKER_NAME).privateKey);
  // Derived from the broker key that exists, so a second gateway set up later (another
  // gateway directory, the same broker) authorizes the same broker.
  put(L.gateway.authorizedKeys, `${publicKeyLine(readFileSync(L.broker.sshKey, 'utf8'), e.BROKER_NAME)}\n`, 0o644);

  // The gateway's queue password; the broker only ever sees its SHA-256.
  put(L.gateway.queuePassword, randomBytes(32).toString('base64url'));
  if (e.KNOCK_MODE === 'time') {
    const secret = randomBytes(32).toString('base64url');
    put(L.gateway.knockSecret, secret);
    put(L.broker.knockSecret(e.GATEWAY_ID), readFileSync(L.gateway.knockSecret, 'utf8'));
  }

  writeGatewaysFile(L, e);
  log.info('keys ready', { created: created.length, gatewayHostKey: fingerprintOfKey(readFileSync(L.gateway.hostKey, 'utf8')) });
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
