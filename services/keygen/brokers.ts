import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../common/errors/config-error';
import { BROKER_NAME } from '../common/ids/names';
import type { PemPair } from '../common/pki/certificates';
import { replaceFile } from '../common/pki/files';
import { KeyOptionsError, parseKeyOptions } from '../common/ssh/key-options';
import { deploymentCas, writeCrlFile } from './crl-file';
import type { KeyLayout } from './layout';

/**
 * The deployment's brokers, as keygen issued them (`pki/brokers.json`): each one's name (its
 * certificate's CN and its authorized_keys comment), SSH public key, client certificate
 * serial, the restrictions on its key and, once revoked, when. Every file that says who the
 * brokers are is derived from it: each gateway's authorized_keys, core's list of brokers
 * and the CA's revocation list.
 */
export interface BrokerRecord {
  name: string;
  /** "ssh-ed25519 AAAA... <name>" */
  sshPublicKey: string;
  /**
   * The key sshPublicKey replaced, during a broker key rotation's overlap (`rotate
   * broker-key` until `retire broker-key`): authorized on every gateway with the same
   * restrictions, so the broker's tunnels on it keep working until they moved to the new one.
   */
  previousSshPublicKey?: string;
  certSerial: string;
  /** from= of its authorized_keys line, if any. */
  from?: string;
  /** expiry-time= of its authorized_keys line, if any. */
  expiryTime?: string;
  /** ISO time of its revocation. */
  revokedAt?: string;
  /** Serial of the CA certificate that signed certSerial (`retire ca` refuses while a broker holds the old CA's). */
  caSerial?: string;
}

export function loadBrokers(path: string): BrokerRecord[] {
  if (!existsSync(path)) return [];
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { brokers?: BrokerRecord[] };
  const brokers = parsed.brokers ?? [];
  for (const b of brokers) if (typeof b.name !== 'string' || !BROKER_NAME.test(b.name)) throw new ConfigError([`${path}: ${JSON.stringify(b.name)} is not a broker name`]);
  return brokers;
}

export function saveBrokers(path: string, brokers: readonly BrokerRecord[]): void {
  replaceFile(path, `${JSON.stringify({ brokers }, null, 2)}\n`, 0o600);
}

/**
 * The options keygen writes before a broker's key: it may only ask for the reverse forward
 * of the queue port on the gateway's loopback (OpenSSH's semantics: restrict turns every
 * forwarding off, port-forwarding turns -R back on, permitlisten limits it), and only from
 * `from` and until `expiryTime` when given (checked by brokerRestrictionProblems).
 */
export function brokerKeyOptions(queuePort: number, b: Pick<BrokerRecord, 'from' | 'expiryTime'>): string {
  const opts = ['restrict', 'port-forwarding', `permitlisten="127.0.0.1:${queuePort}"`];
  if (b.from !== undefined) opts.push(`from="${b.from}"`);
  if (b.expiryTime !== undefined) opts.push(`expiry-time="${b.expiryTime}"`);
  return opts.join(',');
}

/** What the gateway would refuse in a broker's from= or expiry-time=, one line per variable. */
export function brokerRestrictionProblems(from: string | undefined, expiryTime: string | undefined): string[] {
  const problems: string[] = [];
  const check = (variable: string, value: string | undefined, option: string): void => {
    if (value === undefined) return;
    if (/["\s\\]/.test(value)) return void problems.push(`${variable}=${JSON.stringify(value)}: no quotes, backslashes or spaces`);
    try {
      parseKeyOptions(`${option}="${value}"`);
    } catch (err) {
      if (!(err instanceof KeyOptionsError)) throw err;
      problems.push(`${variable}=${JSON.stringify(value)}: ${err.message}`);
    }
  };
  check('BROKER_FROM', from, 'from');
  check('BROKER_KEY_EXPIRY', expiryTime, 'expiry-time');
  return problems;
}

/** A gateway's authorized_keys: every broker not revoked, each with its restrictions. */
export function renderAuthorizedKeys(brokers: readonly BrokerRecord[], queuePort: number): string {
  const lines = brokers.filter((b) => !b.revokedAt).flatMap((b) => [b.sshPublicKey, ...(b.previousSshPublicKey ? [b.previousSshPublicKey] : [])].map((key) => `${brokerKeyOptions(queuePort, b)} ${key}`));
  return `# Written by nonstop-keygen from pki/brokers.json: edits here are replaced on its next run.\n${lines.join('\n')}\n`;
}

/** Core's list of brokers: every broker not revoked. */
export function renderBrokerNames(brokers: readonly BrokerRecord[]): string {
  return `# Written by nonstop-keygen: the brokers whose client certificates core accepts.\n${brokers
    .filter((b) => !b.revokedAt)
    .map((b) => `${b.name}\n`)
    .join('')}`;
}

/**
 * Writes every file derived from the broker list: this gateway's authorized_keys, core's
 * list of brokers and the CA's revocation list (re-signed only when the revoked set or the
 * CAs changed, so an unchanged run changes no file and core reloads nothing).
 */
export async function writeIdentityFiles(L: KeyLayout, brokers: readonly BrokerRecord[], ca: PemPair, queuePort: number): Promise<void> {
  replaceFile(L.gateway.authorizedKeys, renderAuthorizedKeys(brokers, queuePort), 0o644);
  replaceFile(L.core.brokerNames, renderBrokerNames(brokers), 0o644);
  // One list per CA core trusts (two while a CA is rotated: keygen/crl-file.ts).
  await writeCrlFile(L, brokers, deploymentCas(L, ca));
}
