import { createHash } from 'node:crypto';

/**
 * The record id of a write that carries an Idempotency-Key: a name-based UUID (RFC 9562
 * version 8, from SHA-256) of the token's client identity, the collection and the key.
 * It does not depend on the token, so a retry sent with the client's rotated token lands
 * on the same record; it does depend on the client, so two clients choosing the same key
 * never meet. The fields cannot contain NUL (client names and collections are checked
 * patterns, keys printable ASCII), so NUL-joining them is unambiguous. Pure.
 */
export function keyedRecordId(client: string, collection: string, key: string): string {
  const digest = createHash('sha256').update(`nonstop-record-v1\0${client}\0${collection}\0${key}`, 'utf8').digest();
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
