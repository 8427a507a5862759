/**
 * ed25519 keys from chosen seeds, for tests of SSH key encoding. Public keys that begin with
 * zero bytes are rare (1 in 256, 1 in 65536), and encoders that strip or miscount them
 * (ssh2's generator did) fail only then; these seeds make such keys on every run.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';

/** PKCS#8 DER of an ed25519 private key, up to its 32-byte seed (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Seeds (sha256 of "nonstop ssh fixture <n>", n = 103 and 33223) and what their public keys begin with. */
export const ZERO_LEADING_SEEDS: readonly { seed: Buffer; publicPrefix: Buffer }[] = [
  { seed: Buffer.from('dec8c688e0dddb171178d919467348f903da17e40a60a011297fe0b09270961d', 'hex'), publicPrefix: Buffer.from([0x00]) },
  { seed: Buffer.from('65d23ffdeaef907927cae9d1fb97959e2732e67cb16d4d0f48ff15fd81c1b919', 'hex'), publicPrefix: Buffer.from([0x00, 0x00]) },
];

export function ed25519FromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** The raw 32-byte public key of an ed25519 key, as node:crypto computes it. */
export function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url');
}
