import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API tokens: `nst_<id>_<secret>`. The id (16 hex) finds the record; the secret (32 random
 * bytes, base64url) is never stored — only SHA-256 of the whole token, compared in
 * constant time. 256 bits of entropy make a slow hash unnecessary. Pure.
 */
const TOKEN = /^nst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewToken {
  id: string;
  token: string;
  hash: string;
}

export function generateToken(): NewToken {
  const id = randomBytes(8).toString('hex');
  const token = `nst_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, token, hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The token's id, or undefined when the string is not shaped like a token. */
export function tokenId(token: string): string | undefined {
  return TOKEN.exec(token)?.[1];
}

export function hashMatches(token: string, storedHash: string): boolean {
  const a = Buffer.from(hashToken(token), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
