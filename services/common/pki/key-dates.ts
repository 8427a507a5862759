import { z } from 'zod';

/**
 * The dates of the keys that carry none of their own (SSH keys, queue passwords, knock
 * secrets), as keygen stamps them: one manifest per tier, `key-dates.json` in the tier's key
 * directory, read by the tier to export `nonstop_key_expiry_timestamp_seconds`. It holds no
 * secret: each key is named by its file and a short hash of the file's content, which says
 * whether the key changed and nothing about the key. Pure.
 *
 *   {"version": 1, "keys": [{"name": "queue.password", "fingerprint": "sha256:3f9a...",
 *     "createdAt": "2026-11-28T06:00:00.000Z", "notAfter": "2027-11-28T06:00:00.000Z"}]}
 */

/** The manifest's file name in each tier's key directory. */
export const KEY_DATES_FILE_NAME = 'key-dates.json';

/** A key's file name: also its `key` label, so only what keygen names (bounded, no path). */
export const KEY_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface KeyDate {
  /** The file's base name (`<file>.previous` for the old key during a rotation's overlap). */
  name: string;
  /** `sha256:` and the first 16 hex digits of the SHA-256 of the file's content. */
  fingerprint: string;
  /** ISO 8601, UTC. */
  createdAt: string;
  notAfter: string;
}

export interface KeyDates {
  version: 1;
  keys: KeyDate[];
}

/** A manifest that cannot be used; the message says what is wrong. */
export class KeyDatesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyDatesError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const isoDate = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && Number.isFinite(Date.parse(s)), 'an ISO 8601 date');
const schema = z
  .object({
    version: z.literal(1),
    keys: z.array(
      z
        .object({
          name: z.string().regex(KEY_FILE_NAME),
          fingerprint: z.string().regex(/^sha256:[0-9a-f]{16}$/),
          createdAt: isoDate,
          notAfter: isoDate,
        })
        .strict(),
    ).max(1024),
  })
  .strict();

export function parseKeyDates(text: string): KeyDates {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new KeyDatesError('not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new KeyDatesError(`${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  const names = new Set<string>();
  for (const k of r.data.keys) {
    if (names.has(k.name)) throw new KeyDatesError(`keys: ${k.name} listed twice`);
    names.add(k.name);
  }
  return r.data;
}

export function formatKeyDates(dates: KeyDates): string {
  return `${JSON.stringify(dates, null, 2)}\n`;
}
