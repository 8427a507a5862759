import { MongoBulkWriteError, type Collection, type Db, type Document, type Filter, type OptionalUnlessRequiredId } from 'mongodb';
import type { TokenDoc } from '../auth/tokens';
import type { RecordDoc } from '../storage/records';
import { BackupRefusedError } from './backup-refused-error';
import { recordDoc, sameRecord, sameToken, tokenDoc } from './documents';
import type { VerifiedBackup } from './format';

/** MongoDB's DuplicateKey. */
const DUPLICATE_KEY = 11000;
/** Documents per insert: bounded so one call stays well inside the driver's message size. */
const BATCH = 200;

export interface InsertOutcome {
  /** Inserted by this restore. */
  inserted: number;
  /** Already in the target as the backup has them (a restore run again, or one that overlapped). */
  alreadyThere: number;
  /** Ids the target holds with other content: kept as the target has them. */
  differing: string[];
}

export interface RestoreResult {
  records: InsertOutcome;
  tokens: InsertOutcome;
}

/**
 * Inserts `docs`; an id the target already holds is left as it is there (never overwritten)
 * and counted as already there when `same` says it is the backup's, as differing otherwise.
 */
async function insertAll<T extends Document & { _id: string }>(coll: Collection<T>, docs: T[], same: (a: T, b: T) => boolean): Promise<InsertOutcome> {
  const out: InsertOutcome = { inserted: 0, alreadyThere: 0, differing: [] };
  for (let i = 0; i < docs.length; i += BATCH) {
    const batch = docs.slice(i, i + BATCH);
    let duplicates: T[] = [];
    try {
      // The driver types an insert's _id as optional for generic documents; ours always has one.
      await coll.insertMany(batch as unknown as OptionalUnlessRequiredId<T>[], { ordered: false });
      out.inserted += batch.length;
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || err.writeConcernError) throw err;
      const errors = [err.writeErrors].flat();
      const other = errors.find((w) => w.code !== DUPLICATE_KEY);
      if (other) throw err;
      duplicates = errors.map((w) => batch[w.index]!);
      out.inserted += batch.length - duplicates.length;
    }
    if (duplicates.length === 0) continue;
    const found = await coll.find({ _id: { $in: duplicates.map((d) => d._id) } } as Filter<T>).toArray();
    const existing = new Map(found.map((d) => [d._id as string, d as unknown as T]));
    for (const d of duplicates) {
      const there = existing.get(d._id);
      if (there && same(there, d)) out.alreadyThere++;
      else out.differing.push(d._id);
    }
  }
  return out;
}

/**
 * Writes a verified backup (format.ts verifyBackup) into core's database.
 *
 * Without `merge`, a core that holds any record is refused before anything is written: a
 * restore is for a fresh core. With it, the backup's records and tokens are added beside
 * what is there: an id the target holds is kept as it is (identical ones counted as
 * already there), so running a restore again, after one that was interrupted, finishes it.
 *
 * Records go in before tokens: until the last record is in, no restored token opens the
 * restored core, so its clients never read a half-restored collection.
 */
export async function restoreBackup(db: Db, backup: VerifiedBackup, opts: { merge: boolean }): Promise<RestoreResult> {
  const records = db.collection<RecordDoc>('records');
  if (!opts.merge) {
    const held = await records.countDocuments({}, { limit: 1 });
    if (held > 0) {
      throw new BackupRefusedError('target_not_empty', 'this core already holds records: restore into a fresh core, or add --merge to add the backup beside them (records it already holds are kept as they are)');
    }
  }
  const recordResult = await insertAll(records, backup.records.map(recordDoc), sameRecord);
  const tokenResult = await insertAll(db.collection<TokenDoc>('tokens'), backup.tokens.map(tokenDoc), sameToken);
  return { records: recordResult, tokens: tokenResult };
}
