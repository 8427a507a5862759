import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ApiError } from '../../common/errors/api-error';
import type { KeyLookup } from './data-keys';

/**
 * Envelope encryption of a record's content. Each record gets its own random data key
 * (AES-256-GCM), which encrypts the content; the data key is stored wrapped (AES-256-GCM
 * again) under a key-encryption key from core's key file, named by its id. So:
 * - rotating the key-encryption key rewraps 60 bytes per record, never the content;
 * - a record's data key is its own: destroying it (or every copy of its wrapping) makes
 *   that record unreadable wherever its ciphertext went (crypto-shredding, issue 14);
 * - both encryptions authenticate the record's id and collection as associated data, and
 *   the wrapping also its key id: a ciphertext or wrapped key copied onto another record
 *   fails to decrypt instead of answering with that other record's content.
 * Ids (UUIDs) and collection names cannot hold NUL, so NUL-joined fields are unambiguous. Pure.
 */

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
/** nonce ‖ wrapped data key ‖ tag */
const WRAPPED_BYTES = NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES;

/** Which record a ciphertext belongs to. */
export interface RecordBinding {
  id: string;
  collection: string;
}

/** What is stored in place of a record's content. */
export interface Sealed {
  /** The key-encryption key that wraps this record's data key. */
  keyId: string;
  /** nonce ‖ AES-256-GCM(key-encryption key, data key) ‖ tag */
  wrappedKey: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function dataAad(b: RecordBinding): Buffer {
  return Buffer.from(`nonstop-record-data-v1\0${b.collection}\0${b.id}`, 'utf8');
}

function keyAad(b: RecordBinding, keyId: string): Buffer {
  return Buffer.from(`nonstop-record-key-v1\0${keyId}\0${b.collection}\0${b.id}`, 'utf8');
}

function unreadable(message: string, cause?: unknown): ApiError {
  return new ApiError('recordUnreadable', message, cause === undefined ? undefined : { cause });
}

function wrap(kek: Buffer, keyId: string, b: RecordBinding, dataKey: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', kek, nonce);
  c.setAAD(keyAad(b, keyId));
  const wrapped = Buffer.concat([c.update(dataKey), c.final()]);
  return Buffer.concat([nonce, wrapped, c.getAuthTag()]);
}

function unwrap(keys: KeyLookup, b: RecordBinding, keyId: string, wrappedKey: Buffer): Buffer {
  const kek = keys.key(keyId);
  if (!kek) throw unreadable(`the record's key ${keyId} is not in core's key file`);
  if (wrappedKey.length !== WRAPPED_BYTES) throw unreadable('the record failed its integrity check (wrapped key)');
  try {
    const d = createDecipheriv('aes-256-gcm', kek, wrappedKey.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    d.setAAD(keyAad(b, keyId));
    d.setAuthTag(wrappedKey.subarray(NONCE_BYTES + DATA_KEY_BYTES));
    return Buffer.concat([d.update(wrappedKey.subarray(NONCE_BYTES, NONCE_BYTES + DATA_KEY_BYTES)), d.final()]);
  } catch (err) {
    throw unreadable('the record failed its integrity check (wrapped key)', err);
  }
}

/** Encrypts a record's content (its JSON text) under a fresh data key wrapped by the active key. */
export function sealRecord(keys: KeyLookup, b: RecordBinding, plaintext: string): Sealed {
  const kek = keys.active();
  const dataKey = randomBytes(DATA_KEY_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', dataKey, nonce);
  c.setAAD(dataAad(b));
  const ciphertext = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  return { keyId: kek.id, wrappedKey: wrap(kek.key, kek.id, b, dataKey), nonce, ciphertext, tag: c.getAuthTag() };
}

/**
 * The record's content, or ApiError record_unreadable (500) when its key is missing or any
 * part fails authentication: never other bytes.
 */
export function openRecord(keys: KeyLookup, b: RecordBinding, s: Sealed): string {
  const dataKey = unwrap(keys, b, s.keyId, s.wrappedKey);
  if (s.nonce.length !== NONCE_BYTES || s.tag.length !== TAG_BYTES) throw unreadable('the record failed its integrity check');
  try {
    const d = createDecipheriv('aes-256-gcm', dataKey, s.nonce, { authTagLength: TAG_BYTES });
    d.setAAD(dataAad(b));
    d.setAuthTag(s.tag);
    return Buffer.concat([d.update(s.ciphertext), d.final()]).toString('utf8');
  } catch (err) {
    throw unreadable('the record failed its integrity check', err);
  }
}

/**
 * The same record's data key wrapped under another key-encryption key (the active one by
 * default): the content and its ciphertext stay as they are.
 */
export function rewrapRecord(keys: KeyLookup, b: RecordBinding, s: Pick<Sealed, 'keyId' | 'wrappedKey'>, to = keys.active()): Pick<Sealed, 'keyId' | 'wrappedKey'> {
  const dataKey = unwrap(keys, b, s.keyId, s.wrappedKey);
  return { keyId: to.id, wrappedKey: wrap(to.key, to.id, b, dataKey) };
}
