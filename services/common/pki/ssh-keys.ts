import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';

/**
 * SSH keys in OpenSSH's formats, written and read with node:crypto alone: ed25519 key pairs
 * ("openssh-key-v1" private keys, authorized_keys lines) and "SHA256:..." fingerprints for
 * pinning host keys. Core's image runs keygen, which needs exactly this, and carries no SSH
 * library; reading keys of every other format is ssh-parse.ts's, for the tiers that speak SSH.
 */
export interface SshKeyPair {
  /** OpenSSH private key ("-----BEGIN OPENSSH PRIVATE KEY-----"), unencrypted. */
  privateKey: string;
  /** One authorized_keys / known_hosts style line: "ssh-ed25519 AAAA... comment". */
  publicKey: string;
}

/** Text that is not an SSH key this module (or ssh-parse.ts) can read. */
export class SshKeyFormatError extends Error {
  constructor(message: string) {
    super(`cannot parse key: ${message}`);
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const ED25519 = 'ssh-ed25519';
const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
/** The cipher block size OpenSSH pads an unencrypted private section to. */
const BLOCK = 8;

export function generateSshKeyPair(comment: string): SshKeyPair {
  return sshKeyPairOf(generateKeyPairSync('ed25519').privateKey, comment);
}

/**
 * The OpenSSH encoding of an ed25519 private key held by node:crypto. The raw seed and public
 * key come from its JWK form, which always holds exactly 32 bytes each: no DER to slice, so a
 * public key that starts with zero bytes keeps them (the SSH library's generator dropped them).
 */
export function sshKeyPairOf(key: KeyObject, comment: string): SshKeyPair {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new TypeError('an ed25519 private key is required');
  if (/[\r\n]/.test(comment)) throw new TypeError('the comment must be one line');
  const jwk = key.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d ?? '', 'base64url');
  const pub = Buffer.from(jwk.x ?? '', 'base64url');
  if (seed.length !== 32 || pub.length !== 32) throw new TypeError('ed25519 key parts are not 32 bytes');

  const blob = Buffer.concat([sshString(ED25519), sshString(pub)]);
  // Equal check integers tell OpenSSH a decryption worked; random, as ssh-keygen writes them.
  const check = randomBytes(4);
  const secret = Buffer.concat([check, check, sshString(ED25519), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (BLOCK - (secret.length % BLOCK)) % BLOCK;
  const padding = Buffer.from(Array.from({ length: pad }, (_, i) => i + 1));
  const body = Buffer.concat([MAGIC, sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(blob), sshString(Buffer.concat([secret, padding]))]);
  // Wrapped at 70 columns, as ssh-keygen writes it.
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return { privateKey: `${BEGIN}\n${lines.join('\n')}\n${END}\n`, publicKey: `${ED25519} ${blob.toString('base64')} ${comment}`.trim() };
}

/**
 * The public key blob (its SSH wire encoding) of an authorized_keys line ("type base64
 * [comment]") or of an OpenSSH private key, encrypted or not: the container carries the
 * public key in the clear. PEM (PKCS#1/PKCS#8) keys are ssh-parse.ts's to read.
 */
export function publicKeyBlob(key: string | Buffer): Buffer {
  const text = (typeof key === 'string' ? key : key.toString('utf8')).trim();
  if (text.startsWith(BEGIN)) return blobOfPrivateKey(text);
  const [type, b64] = text.split(/\s+/);
  if (!type || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new SshKeyFormatError('neither an OpenSSH private key nor a "type base64 comment" line');
  const blob = Buffer.from(b64, 'base64');
  const inner = checkBlob(blob);
  if (inner !== type) throw new SshKeyFormatError(`the line says ${type} but its key is ${inner}`);
  return blob;
}

/** The authorized_keys line of a key (private or public), with `comment`. */
export function publicKeyLine(key: string | Buffer, comment: string): string {
  const blob = publicKeyBlob(key);
  return `${checkBlob(blob)} ${blob.toString('base64')} ${comment}`.trim();
}

/** OpenSSH-style fingerprint of a public key blob (the wire encoding of the key). */
export function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Fingerprint of a public key given as an authorized_keys line or an OpenSSH private key. */
export function fingerprintOfKey(key: string | Buffer): string {
  return fingerprintOfBlob(publicKeyBlob(key));
}

function blobOfPrivateKey(text: string): Buffer {
  const end = text.indexOf(END);
  if (end < 0) throw new SshKeyFormatError('OpenSSH private key without its END line');
  const b64 = text.slice(BEGIN.length, end).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new SshKeyFormatError('OpenSSH private key is not base64');
  const body = Buffer.from(b64, 'base64');
  if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw new SshKeyFormatError('not an openssh-key-v1 container');
  const r = new Reader(body, MAGIC.length);
  r.string(); // cipher name
  r.string(); // KDF name
  r.string(); // KDF options
  const count = r.uint32();
  // OpenSSH writes and reads exactly one key per file.
  if (count !== 1) throw new SshKeyFormatError(`openssh-key-v1 container holds ${count} keys, not 1`);
  const blob = r.string();
  checkBlob(blob);
  return blob;
}

/** The key type a public key blob names; for ed25519, also that it holds exactly a 32-byte key. */
function checkBlob(blob: Buffer): string {
  const r = new Reader(blob, 0);
  const type = r.string().toString('latin1');
  if (!/^[a-z0-9][a-z0-9@.+-]{0,63}$/.test(type)) throw new SshKeyFormatError('public key blob does not start with a key type');
  if (type === ED25519) {
    if (r.string().length !== 32 || !r.atEnd()) throw new SshKeyFormatError('ssh-ed25519 public key is not 32 bytes');
  } else if (r.atEnd()) {
    throw new SshKeyFormatError(`${type} public key blob holds no key`);
  }
  return type;
}

function sshString(value: string | Buffer): Buffer {
  const b = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([uint32(b.length), b]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Reads SSH wire fields (RFC 4251 §5), refusing a length that runs past the end. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
  ) {}

  uint32(): number {
    if (this.pos + 4 > this.buf.length) throw new SshKeyFormatError('truncated key data');
    const n = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return n;
  }

  string(): Buffer {
    const n = this.uint32();
    if (this.pos + n > this.buf.length) throw new SshKeyFormatError('truncated key data');
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  atEnd(): boolean {
    return this.pos === this.buf.length;
  }
}
