import { createHash, randomUUID } from 'node:crypto';

/** A fresh request id. */
export function newRequestId(): string {
  return randomUUID();
}

/**
 * The request id for a client-supplied Idempotency-Key: the same token, collection and key
 * always give the same id, so a client's retry is the same request all the way to core
 * (whose insert is keyed by it). Formatted as an RFC 9562 version-8 UUID.
 */
export function idempotentRequestId(token: string, collection: string, key: string): string {
  const digest = createHash('sha256').update(`nonstop-idem-v1\0${token}\0${collection}\0${key}`).digest();
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
