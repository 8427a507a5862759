import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { ApiError } from '../../common/errors/api-error';
import { DATA_KEY_ID } from '../../common/pki/data-key-file';
import type { KeyLookup } from './data-keys';

/**
 * The list cursor: where the last page ended (its last record's createdAt and id), signed
 * by core for the collection and filters it was issued for. Decoding is strict and typed:
 * a fixed binary layout whose fields become a number and a UUID string, so no cursor can
 * put anything but those two values into the next page's filter, and a cursor that was
 * changed, cut, padded, or issued for another collection or other filters fails its MAC.
 *
 *   version (1) ‖ createdAt ms, big-endian int64 (8) ‖ record id, UUID bytes (16)
 *   ‖ key id length (1) ‖ key id ‖ HMAC-SHA256 (32)
 *
 * The MAC key is derived (HKDF) from one of core's key-encryption keys, named in the cursor,
 * so cursors survive key rotation until that key is retired and need no secret of their own;
 * once it is retired, its cursors are refused and the client lists again from the start.
 * Text form: unpadded base64url, re-encoded and compared, so one cursor has one spelling.
 * Pure.
 */

/** What a cursor is valid for: the collection and the filters, as the times core uses (ms, rounded). */
export interface CursorScope {
  collection: string;
  fromMs: number | undefined;
  toMs: number | undefined;
}

/** The last record a page returned; the next page starts after it in (createdAt, id) order. */
export interface CursorPosition {
  createdAt: Date;
  id: string;
}

const VERSION = 1;
const MAC_BYTES = 32;
const HEADER_BYTES = 1 + 8 + 16 + 1;
/** JavaScript's Date range: every stored createdAt is inside it. */
const MAX_TIME_MS = 8.64e15;
const UUID = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/;

function badCursor(message: string): ApiError {
  return new ApiError('badCursor', message);
}

function macKey(kek: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', kek, Buffer.alloc(0), 'nonstop-list-cursor-v1', 32));
}

/** NUL-joined: a collection name cannot hold NUL, and the times are decimal digits or "-". */
function mac(kek: Buffer, scope: CursorScope, body: Buffer): Buffer {
  const bound = `nonstop-list-cursor-v1\0${scope.collection}\0${scope.fromMs ?? '-'}\0${scope.toMs ?? '-'}\0`;
  return createHmac('sha256', macKey(kek)).update(bound, 'utf8').update(body).digest();
}

export function encodeCursor(keys: KeyLookup, scope: CursorScope, position: CursorPosition): string {
  const ms = position.createdAt.getTime();
  const m = UUID.exec(position.id);
  if (!m || !Number.isInteger(ms) || ms < 0 || ms > MAX_TIME_MS) throw new Error('a cursor needs a stored record: a UUID id and a createdAt in range');
  const { id: keyId, key } = keys.active();
  const keyIdBytes = Buffer.from(keyId, 'ascii');
  const body = Buffer.alloc(HEADER_BYTES + keyIdBytes.length);
  body.writeUInt8(VERSION, 0);
  body.writeBigInt64BE(BigInt(ms), 1);
  Buffer.from(m.slice(1).join(''), 'hex').copy(body, 9);
  body.writeUInt8(keyIdBytes.length, 25);
  keyIdBytes.copy(body, HEADER_BYTES);
  return Buffer.concat([body, mac(key, scope, body)]).toString('base64url');
}

/** The position a cursor holds, or 400 bad_cursor; never anything else from it. */
export function decodeCursor(keys: KeyLookup, scope: CursorScope, text: string): CursorPosition {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw badCursor('the cursor is not base64url text');
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) throw badCursor('the cursor is not one this service issued');
  if (bytes.length < HEADER_BYTES + 1 + MAC_BYTES || bytes[0] !== VERSION) throw badCursor('the cursor is not one this service issued');
  const keyIdLength = bytes[25]!;
  if (bytes.length !== HEADER_BYTES + keyIdLength + MAC_BYTES) throw badCursor('the cursor is not one this service issued');
  const body = bytes.subarray(0, HEADER_BYTES + keyIdLength);
  const keyId = body.subarray(HEADER_BYTES).toString('latin1');
  if (!DATA_KEY_ID.test(keyId)) throw badCursor('the cursor is not one this service issued');
  const kek = keys.key(keyId);
  if (!kek) throw badCursor('the cursor was signed with a key core no longer holds: list again from the start');
  if (!timingSafeEqual(mac(kek, scope, body), bytes.subarray(body.length))) {
    throw badCursor('the cursor was not issued for this collection and these filters, or was changed');
  }
  // Past the MAC these are core's own values; checked anyway, as any decoded input is.
  const ms = Number(body.readBigInt64BE(1));
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_TIME_MS) throw badCursor('the cursor is not one this service issued');
  const hex = body.subarray(9, 25).toString('hex');
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { createdAt: new Date(ms), id };
}
