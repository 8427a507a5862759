import { utils, type ParsedKey } from 'ssh2';
import { fingerprintOfBlob, SshKeyFormatError } from './ssh-keys';

/**
 * Keys of every format ssh2 reads (OpenSSH, PEM, PuTTY; RSA, ECDSA, ed25519), for the tiers
 * that speak SSH: the gateway (its host key, authorized_keys) and the broker. Kept apart from
 * ssh-keys.ts so nothing core's image runs ever loads ssh2.
 */

/** ssh2's parseKey, narrowed to one key or an exception. */
export function parseOneKey(key: string | Buffer): ParsedKey {
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) throw new SshKeyFormatError(parsed.message);
  return parsed;
}

/** Fingerprint of any key ssh2 reads: an operator's own host key may be RSA, or PEM. */
export function fingerprintOfAnyKey(key: string | Buffer): string {
  return fingerprintOfBlob(parseOneKey(key).getPublicSSH());
}
