import { createHash, createHmac, hkdfSync, timingSafeEqual, type Hash, type Hmac } from 'node:crypto';
import { z } from 'zod';
import { REQUEST_ID, isCollectionName } from '../../common/ids/names';
import { DATA_KEY_ID } from '../../common/pki/data-key-file';
import type { KeyLookup } from '../storage/data-keys';
import { BackupRefusedError } from './backup-refused-error';

/**
 * The backup file nonstop-admin writes and reads (`nonstop-admin backup`, `... restore`).
 * Pure: bytes in, bytes or checked lines out; the database side is snapshot.ts and restore.ts.
 *
 * NDJSON, one JSON object per line, each line ending in "\n":
 *
 *   {"format":"nonstop-backup","version":1,"startedAt":"2026-11-28T10:00:00.000Z"}
 *   {"t":"token","id":"<16 hex>","hash":"<sha256 hex>","client":...,"collections":[...],"scopes":[...],"createdAt":...}
 *   {"t":"record","id":"<uuid>","collection":"notes","client":...,"tokenId":...,"createdAt":...,
 *    "enc":{"v":1,"keyId":"...","wrappedKey":"<b64>","nonce":"<b64>","ciphertext":"<b64>","tag":"<b64>"}}
 *   ...
 *   {"t":"end","tokens":3,"records":1200,"keyIds":["..."],"sha256":"<hex>","macKeyId":"...","mac":"<hex>"}
 *
 * - Records are copied exactly as core stores them: content sealed (record-cipher.ts), never
 *   decrypted here. Tokens as stored: the SHA-256 of each token, never a token.
 * - startedAt: every write core acknowledged before it is in the file (snapshot.ts says why).
 * - The trailer comes last because its facts are known only at the end of a scan that
 *   streams (to stdout): the counts, the key ids the records need (restore refuses a core
 *   whose key file lacks one: it would hold unreadable records), the SHA-256 of every byte
 *   before the trailer line, and an HMAC-SHA256 of the same bytes under a key derived from
 *   the deployment's active key-encryption key (named by macKeyId). A file without its
 *   trailer is refused, so a backup cut short (a full disk, a killed `docker exec`) can
 *   never pass for a complete one.
 * - The SHA-256 tells damage from anything else without any key; the MAC tells a file this
 *   deployment's keys made from one someone else made or altered and re-checksummed. That
 *   matters for tokens: a restore trusts the file's token hashes, scopes and revocations,
 *   so an unauthenticated file could bring in a token whose secret its author knows.
 * - The trailer's counts and key ids are not covered by the checksum themselves: they are
 *   recomputed from the lines, which are.
 */

export const BACKUP_FORMAT = 'nonstop-backup';
export const BACKUP_VERSION = 1;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: typeof BACKUP_VERSION;
  startedAt: string;
}

export interface TokenLine {
  t: 'token';
  id: string;
  hash: string;
  client?: string | undefined;
  collections: string[];
  scopes: string[];
  createdAt: string;
  expiresAt?: string | undefined;
  revokedAt?: string | undefined;
  label?: string | undefined;
}

export interface SealedLine {
  v: 1;
  keyId: string;
  wrappedKey: string;
  nonce: string;
  ciphertext: string;
  tag: string;
}

export interface RecordLine {
  t: 'record';
  id: string;
  collection: string;
  client?: string | undefined;
  tokenId: string;
  createdAt: string;
  enc: SealedLine;
}

export interface BackupTrailer {
  t: 'end';
  tokens: number;
  records: number;
  keyIds: string[];
  sha256: string;
  macKeyId: string;
  mac: string;
}

export interface VerifiedBackup {
  header: BackupHeader;
  tokens: TokenLine[];
  records: RecordLine[];
  trailer: BackupTrailer;
}

/** The MAC key: derived, so the key-encryption key itself is used for one purpose only. */
function macKey(kek: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', kek, Buffer.alloc(0), 'nonstop-backup-mac-v1', 32));
}

const line = (value: object): Buffer => Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');

/**
 * Writes a backup line by line, hashing as it goes: header() first, then token() and
 * record() in any order, trailer() last.
 */
export class BackupEncoder {
  private readonly sha: Hash = createHash('sha256');
  private readonly mac: Hmac;
  private tokens = 0;
  private records = 0;
  private readonly keyIds = new Set<string>();
  private stage: 'header' | 'body' | 'ended' = 'header';

  constructor(
    private readonly startedAt: Date,
    private readonly macWith: { id: string; key: Buffer },
  ) {
    this.mac = createHmac('sha256', macKey(macWith.key));
  }

  header(): Buffer {
    this.expect('header');
    this.stage = 'body';
    const header: BackupHeader = { format: BACKUP_FORMAT, version: BACKUP_VERSION, startedAt: this.startedAt.toISOString() };
    return this.hashed(line(header));
  }

  token(t: TokenLine): Buffer {
    this.expect('body');
    this.tokens++;
    return this.hashed(line(t));
  }

  record(r: RecordLine): Buffer {
    this.expect('body');
    this.records++;
    this.keyIds.add(r.enc.keyId);
    return this.hashed(line(r));
  }

  trailer(): Buffer {
    this.expect('body');
    this.stage = 'ended';
    const trailer: BackupTrailer = {
      t: 'end',
      tokens: this.tokens,
      records: this.records,
      keyIds: [...this.keyIds].sort(),
      sha256: this.sha.digest('hex'),
      macKeyId: this.macWith.id,
      mac: this.mac.digest('hex'),
    };
    return line(trailer);
  }

  private expect(stage: 'header' | 'body'): void {
    if (this.stage !== stage) throw new Error(`backup encoder: ${stage} line written after the ${this.stage} stage`);
  }

  private hashed(bytes: Buffer): Buffer {
    this.sha.update(bytes);
    this.mac.update(bytes);
    return bytes;
  }
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const isoTime = z.string().refine((s) => ISO_TIME.test(s) && !Number.isNaN(Date.parse(s)) && new Date(s).toISOString() === s, 'an ISO time');
/** Canonical base64 of exactly `bytes` bytes (any length when undefined). */
const base64 = (bytes?: number) =>
  z.string().refine((s) => {
    const b = Buffer.from(s, 'base64');
    return b.toString('base64') === s && (bytes === undefined || b.length === bytes);
  }, `base64${bytes === undefined ? '' : ` of ${bytes} bytes`}`);
/** A client name, or a token id standing for one (tokens.ts). */
const client = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
const tokenId = z.string().regex(/^[0-9a-f]{16}$/);
const collection = z.string().refine(isCollectionName, 'a collection name');

const headerSchema = z.object({ format: z.literal(BACKUP_FORMAT), version: z.literal(BACKUP_VERSION), startedAt: isoTime }).strict();

const tokenSchema = z
  .object({
    t: z.literal('token'),
    id: tokenId,
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    client: client.optional(),
    collections: z.array(collection).min(1),
    // Any scope name: authorize() compares names, so one it does not know grants nothing.
    scopes: z.array(z.string().regex(/^[a-z]{1,32}$/)).min(1),
    createdAt: isoTime,
    expiresAt: isoTime.optional(),
    revokedAt: isoTime.optional(),
    label: z.string().max(65_536).optional(),
  })
  .strict();

const recordSchema = z
  .object({
    t: z.literal('record'),
    id: z.string().regex(REQUEST_ID),
    collection,
    client: client.optional(),
    tokenId,
    createdAt: isoTime,
    enc: z
      .object({
        v: z.literal(1),
        keyId: z.string().regex(DATA_KEY_ID),
        // record-cipher.ts: nonce ‖ wrapped data key ‖ tag; a 12-byte nonce; a 16-byte tag.
        wrappedKey: base64(60),
        nonce: base64(12),
        ciphertext: base64(),
        tag: base64(16),
      })
      .strict(),
  })
  .strict();

const trailerSchema = z
  .object({
    t: z.literal('end'),
    tokens: z.number().int().nonnegative(),
    records: z.number().int().nonnegative(),
    keyIds: z.array(z.string().regex(DATA_KEY_ID)),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    macKeyId: z.string().regex(DATA_KEY_ID),
    mac: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Where a line fails its schema, by field path only: the values may be a record's ciphertext. */
function shapeProblem(err: z.ZodError): string {
  const issue = err.issues[0];
  const path = issue && issue.path.length > 0 ? issue.path.join('.') : 'the line';
  return `${path}: ${issue?.message ?? 'invalid'}`;
}

/** How every header starts: a file that ends inside it was cut short, not another format. */
const HEADER_START = `{"format":"${BACKUP_FORMAT}",`;

function readHeader(bytes: Buffer): { header: BackupHeader; end: number } {
  const end = bytes.indexOf(0x0a);
  if (end < 0) {
    const text = bytes.subarray(0, HEADER_START.length).toString('utf8');
    if (HEADER_START.startsWith(text)) throw new BackupRefusedError('truncated', bytes.length === 0 ? 'the file is empty: the backup that wrote it failed' : 'the file ends inside its header: it was cut short');
  }
  const raw = parseJson(bytes.subarray(0, end < 0 ? Math.min(bytes.length, 4096) : end).toString('utf8'));
  const obj = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : undefined;
  if (obj?.format !== BACKUP_FORMAT) throw new BackupRefusedError('not_a_backup', `not a ${BACKUP_FORMAT} file: its first line is not a ${BACKUP_FORMAT} header`);
  if (obj.version !== BACKUP_VERSION) {
    throw new BackupRefusedError('unsupported_version', `${BACKUP_FORMAT} version ${JSON.stringify(obj.version)}: this nonstop-admin reads version ${BACKUP_VERSION} only`);
  }
  if (end < 0) throw new BackupRefusedError('truncated', 'the file ends inside its header: it was cut short');
  const parsed = headerSchema.safeParse(obj);
  if (!parsed.success) throw new BackupRefusedError('bad_line', `line 1 (header): ${shapeProblem(parsed.error)}`);
  return { header: parsed.data, end: end + 1 };
}

/** Where the trailer line starts, and the trailer; truncated when the last line is not one. */
function readTrailer(bytes: Buffer, bodyStart: number): { trailer: BackupTrailer; start: number } {
  const truncated = new BackupRefusedError('truncated', 'the file does not end with a backup trailer: it was cut short (or its last line damaged), so it may be missing records');
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) throw truncated;
  const start = bytes.lastIndexOf(0x0a, bytes.length - 2) + 1;
  if (start < bodyStart) throw truncated;
  const raw = parseJson(bytes.subarray(start, bytes.length - 1).toString('utf8'));
  if (typeof raw !== 'object' || raw === null || (raw as { t?: unknown }).t !== 'end') throw truncated;
  const parsed = trailerSchema.safeParse(raw);
  if (!parsed.success) throw new BackupRefusedError('bad_line', `the trailer: ${shapeProblem(parsed.error)}`);
  return { trailer: parsed.data, start };
}

/**
 * Checks a whole backup before anything is written anywhere: its header, its trailer, its
 * checksum, every line's shape, the trailer's counts and key ids against the lines, that
 * `keys` (the target core's key file) holds every key id it needs, and its MAC. Returns the
 * lines; throws BackupRefusedError naming the first problem.
 */
export function verifyBackup(bytes: Buffer, keys: KeyLookup): VerifiedBackup {
  const { header, end: bodyStart } = readHeader(bytes);
  const { trailer, start: trailerStart } = readTrailer(bytes, bodyStart);
  const covered = bytes.subarray(0, trailerStart);
  if (createHash('sha256').update(covered).digest('hex') !== trailer.sha256) {
    throw new BackupRefusedError('checksum_mismatch', "the file's SHA-256 is not the one in its trailer: it was damaged or changed after it was written");
  }

  const tokens: TokenLine[] = [];
  const records: RecordLine[] = [];
  const ids = new Set<string>();
  const keyIds = new Set<string>();
  let lineNo = 1;
  for (let at = bodyStart; at < trailerStart; ) {
    lineNo++;
    const nl = bytes.indexOf(0x0a, at);
    const raw = parseJson(bytes.subarray(at, nl).toString('utf8'));
    at = nl + 1;
    const kind = typeof raw === 'object' && raw !== null ? (raw as { t?: unknown }).t : undefined;
    if (kind === 'token') {
      const parsed = tokenSchema.safeParse(raw);
      if (!parsed.success) throw new BackupRefusedError('bad_line', `line ${lineNo} (token): ${shapeProblem(parsed.error)}`);
      if (ids.has(`token:${parsed.data.id}`)) throw new BackupRefusedError('bad_line', `line ${lineNo}: token ${parsed.data.id} appears twice`);
      ids.add(`token:${parsed.data.id}`);
      tokens.push(parsed.data);
    } else if (kind === 'record') {
      const parsed = recordSchema.safeParse(raw);
      if (!parsed.success) throw new BackupRefusedError('bad_line', `line ${lineNo} (record): ${shapeProblem(parsed.error)}`);
      if (ids.has(`record:${parsed.data.id}`)) throw new BackupRefusedError('bad_line', `line ${lineNo}: record ${parsed.data.id} appears twice`);
      ids.add(`record:${parsed.data.id}`);
      keyIds.add(parsed.data.enc.keyId);
      records.push(parsed.data);
    } else {
      throw new BackupRefusedError('bad_line', `line ${lineNo}: neither a token nor a record`);
    }
  }

  const needed = [...keyIds].sort();
  if (trailer.tokens !== tokens.length || trailer.records !== records.length || JSON.stringify(trailer.keyIds) !== JSON.stringify(needed)) {
    throw new BackupRefusedError(
      'inconsistent',
      `the trailer says ${trailer.records} records, ${trailer.tokens} tokens and keys [${trailer.keyIds.join(', ')}]; the file holds ${records.length} records, ${tokens.length} tokens and keys [${needed.join(', ')}]`,
    );
  }
  const missing = [...new Set([...needed, trailer.macKeyId])].filter((id) => keys.key(id) === undefined);
  if (missing.length > 0) {
    throw new BackupRefusedError('unknown_key', `this core's key file does not hold key${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which the backup needs: its records would be unreadable here`);
  }
  const mac = createHmac('sha256', macKey(keys.key(trailer.macKeyId)!)).update(covered).digest();
  if (!timingSafeEqual(mac, Buffer.from(trailer.mac, 'hex'))) {
    throw new BackupRefusedError('not_authentic', `the file's MAC under key ${trailer.macKeyId} does not hold: it was not written by a core with this key file, or was altered and its checksum recomputed`);
  }
  return { header, tokens, records, trailer };
}
