import { randomBytes } from 'node:crypto';
import { z } from 'zod';

/**
 * The file of core's key-encryption keys (KEKs), which wrap each record's own data key
 * (services/core/storage/record-cipher.ts). keygen writes the first one, nonstop-admin adds
 * and removes them (rotation), core reads it. It lives with the deployment's secrets, never
 * on the data volume: a copy of the data volume alone decrypts nothing.
 *
 *   {"active": "20250601-3f9a2c", "keys": {"20250601-3f9a2c": "<32 random bytes, base64>"}}
 *
 * `active` wraps the data keys of new records; every other key is kept to read the records
 * still wrapped under it until nonstop-admin has rewrapped them and retires it. Pure.
 */

/** A key id: stored in every record it wraps, so short, and safe in a file and a log line. */
export const DATA_KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** AES-256. */
export const DATA_KEY_BYTES = 32;

export interface DataKeySet {
  active: string;
  keys: ReadonlyMap<string, Buffer>;
}

/** A key file that cannot be used; the message says what is wrong and never holds key bytes. */
export class DataKeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataKeyFileError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

const fileSchema = z
  .object({
    active: z.string().regex(DATA_KEY_ID),
    keys: z.record(z.string().regex(DATA_KEY_ID), z.string().regex(BASE64)),
  })
  .strict();

export function parseDataKeyFile(text: string): DataKeySet {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new DataKeyFileError('not JSON');
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) throw new DataKeyFileError(`expected {"active": KEY_ID, "keys": {KEY_ID: base64 of ${DATA_KEY_BYTES} bytes}} with key ids matching ${DATA_KEY_ID}`);
  const keys = new Map<string, Buffer>();
  for (const [id, b64] of Object.entries(parsed.data.keys)) {
    const key = Buffer.from(b64, 'base64');
    if (key.length !== DATA_KEY_BYTES) throw new DataKeyFileError(`key ${id} is ${key.length} bytes, expected ${DATA_KEY_BYTES}`);
    keys.set(id, key);
  }
  if (!keys.has(parsed.data.active)) throw new DataKeyFileError(`the active key ${parsed.data.active} is not among the keys`);
  return { active: parsed.data.active, keys };
}

export function formatDataKeyFile(set: DataKeySet): string {
  const keys = Object.fromEntries([...set.keys].map(([id, key]) => [id, key.toString('base64')]));
  return `${JSON.stringify({ active: set.active, keys }, null, 2)}\n`;
}

/** A fresh random key with an id that sorts by creation day and cannot collide in practice. */
export function newDataKey(now = new Date()): { id: string; key: Buffer } {
  const day = now.toISOString().slice(0, 10).replaceAll('-', '');
  return { id: `${day}-${randomBytes(4).toString('hex')}`, key: randomBytes(DATA_KEY_BYTES) };
}

/** A set of one new key, active: the first file of a deployment. */
export function firstDataKeySet(now = new Date()): DataKeySet {
  const { id, key } = newDataKey(now);
  return { active: id, keys: new Map([[id, key]]) };
}
