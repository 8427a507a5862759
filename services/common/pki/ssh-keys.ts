import { createHash } from 'node:crypto';
import { utils, type ParsedKey } from 'ssh2';

/**
 * SSH keys in OpenSSH formats, the way OpenSSH and ssh2 both read them: ed25519 key pairs,
 * authorized_keys lines, and "SHA256:..." fingerprints for pinning host keys.
 */
export interface SshKeyPair {
  /** OpenSSH private key ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKey: string;
  /** One authorized_keys / known_hosts style line: "ssh-ed25519 AAAA... comment". */
  publicKey: string;
}

export function generateSshKeyPair(comment: string): SshKeyPair {
  // ssh2's generator strips every leading zero byte of the ed25519 public key (it means to
  // drop only the BIT STRING's unused-bits byte), so about one pair in 256 comes out with a
  // 31-byte public key that neither ssh2 nor OpenSSH can read. Such a pair is drawn again.
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    if (utils.parseKey(pair.public) instanceof Error || utils.parseKey(pair.private) instanceof Error) continue;
    return { privateKey: pair.private, publicKey: pair.public.trim() };
  }
}

/** The authorized_keys line of a key (private or public), with `comment`. */
export function publicKeyLine(key: string | Buffer, comment: string): string {
  const k = parseOneKey(key);
  return `${k.type} ${k.getPublicSSH().toString('base64')} ${comment}`.trim();
}

/** OpenSSH-style fingerprint of a public key blob (the wire encoding of the key). */
export function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Fingerprint of a public key given as an authorized_keys line or a private key. */
export function fingerprintOfKey(key: string | Buffer): string {
  return fingerprintOfBlob(parseOneKey(key).getPublicSSH());
}

/** ssh2's parseKey, narrowed to one key or an exception. */
export function parseOneKey(key: string | Buffer): ParsedKey {
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) throw new Error(`cannot parse key: ${parsed.message}`);
  return parsed;
}
