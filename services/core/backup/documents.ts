import { Binary } from 'mongodb';
import type { TokenDoc, Scope } from '../auth/tokens';
import type { RecordDoc, SealedDoc } from '../storage/records';
import type { RecordLine, SealedLine, TokenLine } from './format';

/**
 * Database documents to backup lines and back, field by field: the bytes of a sealed record
 * and the instants of a token come back exactly as they were stored.
 */

const b64 = (b: Binary): string => Buffer.from(b.buffer).toString('base64');
const bin = (s: string): Binary => new Binary(Buffer.from(s, 'base64'));

/** A stored record as a backup line; undefined for one stored in clear (before encryption), which a backup must not hold. */
export function recordLine(doc: RecordDoc): RecordLine | undefined {
  if (!doc.enc) return undefined;
  const e = doc.enc;
  const enc: SealedLine = { v: 1, keyId: e.keyId, wrappedKey: b64(e.wrappedKey), nonce: b64(e.nonce), ciphertext: b64(e.ciphertext), tag: b64(e.tag) };
  return { t: 'record', id: doc._id, collection: doc.collection, ...(doc.client !== undefined ? { client: doc.client } : {}), tokenId: doc.tokenId, createdAt: doc.createdAt.toISOString(), enc };
}

export function recordDoc(line: RecordLine): RecordDoc {
  const e = line.enc;
  const enc: SealedDoc = { v: 1, keyId: e.keyId, wrappedKey: bin(e.wrappedKey), nonce: bin(e.nonce), ciphertext: bin(e.ciphertext), tag: bin(e.tag) };
  return { _id: line.id, collection: line.collection, ...(line.client !== undefined ? { client: line.client } : {}), tokenId: line.tokenId, enc, createdAt: new Date(line.createdAt) };
}

export function tokenLine(doc: TokenDoc): TokenLine {
  return {
    t: 'token',
    id: doc._id,
    hash: doc.hash,
    ...(doc.client !== undefined ? { client: doc.client } : {}),
    collections: doc.collections,
    scopes: doc.scopes,
    createdAt: doc.createdAt.toISOString(),
    ...(doc.expiresAt ? { expiresAt: doc.expiresAt.toISOString() } : {}),
    ...(doc.revokedAt ? { revokedAt: doc.revokedAt.toISOString() } : {}),
    ...(doc.label !== undefined ? { label: doc.label } : {}),
  };
}

export function tokenDoc(line: TokenLine): TokenDoc {
  return {
    _id: line.id,
    hash: line.hash,
    ...(line.client !== undefined ? { client: line.client } : {}),
    collections: line.collections,
    // The file's scope names as they are: authorize() grants only the ones it knows.
    scopes: line.scopes as Scope[],
    createdAt: new Date(line.createdAt),
    ...(line.expiresAt !== undefined ? { expiresAt: new Date(line.expiresAt) } : {}),
    ...(line.revokedAt !== undefined ? { revokedAt: new Date(line.revokedAt) } : {}),
    ...(line.label !== undefined ? { label: line.label } : {}),
  };
}

/**
 * Whether a record already in the target is the backup's: the same sealed content (nonce,
 * ciphertext and tag; the data key is the record's own, so these are equal only for the same
 * sealing) in the same collection from the same writer at the same instant. The wrapping is
 * not compared: a `keys rewrap` since changes it, not the record.
 */
export function sameRecord(a: RecordDoc, b: RecordDoc): boolean {
  if (!a.enc || !b.enc) return false;
  const eq = (x: Binary, y: Binary): boolean => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
  return (
    a.collection === b.collection &&
    a.client === b.client &&
    a.tokenId === b.tokenId &&
    a.createdAt.getTime() === b.createdAt.getTime() &&
    eq(a.enc.nonce, b.enc.nonce) &&
    eq(a.enc.ciphertext, b.enc.ciphertext) &&
    eq(a.enc.tag, b.enc.tag)
  );
}

/** Whether a token already in the target is the backup's (the same secret, grant and state). */
export function sameToken(a: TokenDoc, b: TokenDoc): boolean {
  return JSON.stringify(tokenLine(a)) === JSON.stringify(tokenLine(b));
}
