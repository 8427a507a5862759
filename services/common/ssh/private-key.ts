import { utils, type ParsedKey } from 'ssh2';
import { fingerprintOfBlob } from '../pki/ssh-keys';

/** A file that should hold an SSH private key does not hold one ssh2 can use. */
export class SshPrivateKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SshPrivateKeyError';
  }
}

/**
 * Checks that `text` is an unencrypted SSH private key ssh2 can sign with, as its Server and
 * Client would when handed it, and returns its fingerprint: a followed key file is checked
 * with this before it replaces the key in use, so a bad rewrite is refused, not applied.
 */
export function checkSshPrivateKey(text: string): string {
  // At run time parseKey returns an array for some containers (ssh2's Server takes its first
  // key, as here); its types leave that out.
  const parsed: unknown = utils.parseKey(text);
  const key = (Array.isArray(parsed) ? (parsed as unknown[])[0] : parsed) as ParsedKey | Error | undefined;
  if (key === undefined) throw new SshPrivateKeyError('holds no key');
  if (key instanceof Error) throw new SshPrivateKeyError(key.message);
  if (!key.isPrivateKey()) throw new SshPrivateKeyError('holds a public key, not a private one');
  return fingerprintOfBlob(key.getPublicSSH());
}
