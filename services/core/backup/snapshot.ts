import type { Db } from 'mongodb';
import type { TokenDoc } from '../auth/tokens';
import type { KeyLookup } from '../storage/data-keys';
import type { RecordDoc } from '../storage/records';
import { BackupRefusedError } from './backup-refused-error';
import { recordLine, tokenLine } from './documents';
import { BackupEncoder } from './format';

/** Where a backup's bytes go (stdout, or a file that appears under its name only when complete). */
export interface BackupSink {
  write(bytes: Buffer): Promise<void>;
}

export interface BackupSummary {
  startedAt: Date;
  tokens: number;
  records: number;
  keyIds: string[];
  sha256: string;
}

/** Documents the database hands over per round trip. */
const BATCH = 256;
/** Bytes gathered before a write to the sink: fewer system calls than a line each. */
const CHUNK_BYTES = 256 * 1024;

/**
 * Writes a backup of core's tokens and records (format.ts) to `sink` while core keeps
 * serving. Nothing is decrypted: records are copied sealed, as stored.
 *
 * Consistency: every token change and record acknowledged before `startedAt` is in the
 * file; a record written after it may or may not be. `startedAt` is taken before either
 * collection is read, and each collection is read by ONE find (one cursor, no pagination
 * by value), which on each engine returns every document that exists for the whole scan:
 * - FerretDB (SQLite): a find is one SELECT (FerretDB v1 backends/sqlite collection.Query)
 *   whose rows the cursor reads as the driver asks for them; SQLite in WAL mode runs a
 *   statement in one read transaction, so the scan sees the table exactly as of its start.
 *   FerretDB answers a write only after SQLite committed it, so every acknowledged record
 *   is in that view. (That is a snapshot, though FerretDB offers no snapshot reads: it
 *   also means SQLite cannot truncate its write-ahead log past the scan's start until the
 *   scan ends.)
 * - MongoDB (WiredTiger): not a snapshot, but a collection scan walks documents in record
 *   id order and a document keeps its record id for life (WiredTiger never moves one on
 *   update), so a document present from the scan's start to its end is returned, once.
 * A record changes in place only under `keys rewrap` (its key id and wrapped key; either
 * version opens with a key file holding both keys, which restore checks) and is otherwise
 * inserted once; so "present for the whole scan" covers every record acknowledged before
 * `startedAt` that nobody erased meanwhile. Paging by `_id > last` would give the same
 * guarantee, but FerretDB's SQLite backend pushes no range filter or sort down: each page
 * rescans the table (measured: 4.6 s for 5,000 records in pages of 500, 0.7 s in one scan).
 * Tokens are read the same way, first (a revocation updates a token in place: one made
 * before `startedAt` is in the view the scan reads).
 */
export async function writeBackup(db: Db, keys: KeyLookup, sink: BackupSink, now: () => Date = () => new Date()): Promise<BackupSummary> {
  const records = db.collection<RecordDoc>('records');
  const inClear = await records.countDocuments({ enc: { $exists: false } });
  if (inClear > 0) {
    throw new BackupRefusedError('records_in_clear', `${inClear} records are still stored in clear (from before encryption); run "nonstop-admin keys rewrap" first: a backup holds ciphertext only`);
  }
  const startedAt = now();
  const encoder = new BackupEncoder(startedAt, keys.active());
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  const put = async (bytes: Buffer): Promise<void> => {
    pending.push(bytes);
    pendingBytes += bytes.length;
    if (pendingBytes < CHUNK_BYTES) return;
    const chunk = Buffer.concat(pending);
    pending.length = 0;
    pendingBytes = 0;
    await sink.write(chunk);
  };

  await put(encoder.header());
  let tokenCount = 0;
  for await (const t of db.collection<TokenDoc>('tokens').find({}, { batchSize: BATCH })) {
    await put(encoder.token(tokenLine(t)));
    tokenCount++;
  }
  let recordCount = 0;
  const keyIds = new Set<string>();
  for await (const doc of records.find({}, { batchSize: BATCH })) {
    const l = recordLine(doc);
    // Only a record stored before encryption has no sealed content, and none was left when
    // the scan began; one that appears now was put there by hand. Stop: no trailer is
    // written, so what was sent cannot pass for a backup.
    if (!l) throw new BackupRefusedError('records_in_clear', `record ${doc._id} is stored in clear; run "nonstop-admin keys rewrap" first: a backup holds ciphertext only`);
    await put(encoder.record(l));
    keyIds.add(l.enc.keyId);
    recordCount++;
  }
  const trailer = encoder.trailer();
  await put(trailer);
  if (pending.length > 0) await sink.write(Buffer.concat(pending));
  const { sha256 } = JSON.parse(trailer.toString('utf8')) as { sha256: string };
  return { startedAt, tokens: tokenCount, records: recordCount, keyIds: [...keyIds].sort(), sha256 };
}
