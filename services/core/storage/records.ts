import { createHash } from 'node:crypto';
import { MongoServerError, type Collection, type Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';

export interface RecordDoc {
  _id: string;
  collection: string;
  tokenId: string;
  bodySha256: string;
  data: Record<string, unknown>;
  createdAt: Date;
}

export interface StoredRecord {
  id: string;
  collection: string;
  data: Record<string, unknown>;
  createdAt: string;
}

/**
 * Records, keyed by the request id that created them. Inserting the same request twice
 * stores one document and gives the same answer; the same id with different content (a
 * client reusing an Idempotency-Key for another body) is a conflict, not an overwrite.
 * A write is reported only after the database acknowledged it durably.
 */
export class RecordStore {
  private readonly records: Collection<RecordDoc>;

  constructor(db: Db) {
    this.records = db.collection<RecordDoc>('records');
  }

  async init(): Promise<void> {
    await this.records.createIndex({ collection: 1, createdAt: 1 }, { name: 'collection_createdAt' });
    await this.records.db.collection('tokens').createIndex({ createdAt: 1 }, { name: 'createdAt' });
  }

  static bodyHash(canonicalBody: string): string {
    return createHash('sha256').update(canonicalBody, 'utf8').digest('hex');
  }

  /** Returns true when this call stored the record, false when it was already there. */
  async insert(doc: Omit<RecordDoc, 'createdAt'>, now = new Date()): Promise<boolean> {
    try {
      await this.records.insertOne({ ...doc, createdAt: now });
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === 11000) {
        const existing = await this.records.findOne({ _id: doc._id }, { projection: { collection: 1, tokenId: 1, bodySha256: 1 } });
        if (existing && existing.collection === doc.collection && existing.tokenId === doc.tokenId && existing.bodySha256 === doc.bodySha256) return false;
        throw new ApiError('conflict', 'this request id was already used for a different record');
      }
      // BadValue: a document the engine cannot store (FerretDB: nested arrays, infinite
      // numbers such as JSON's 1e400). The client's input, not an outage; nothing stored.
      if (err instanceof MongoServerError && err.code === 2) {
        throw new ApiError('schemaViolation', 'the record holds a value the database cannot store (nested arrays or out-of-range numbers)', { cause: err });
      }
      throw storageError(err);
    }
  }

  async get(collection: string, id: string): Promise<StoredRecord | undefined> {
    let doc: RecordDoc | null;
    try {
      doc = await this.records.findOne({ _id: id, collection });
    } catch (err) {
      throw storageError(err);
    }
    if (!doc) return undefined;
    return { id: doc._id, collection: doc.collection, data: doc.data, createdAt: doc.createdAt.toISOString() };
  }
}

/** A database failure as the client should see it: full disk is 507, the rest 503. */
function storageError(err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (/disk is full|No space left|OutOfDiskSpace/i.test(message) || (err instanceof MongoServerError && err.code === 14031)) {
    return new ApiError('storageFull', 'storage is full; nothing was stored', { cause: err });
  }
  return new ApiError('unavailable', 'storage is unavailable', { cause: err });
}
