import { createHash } from 'node:crypto';
import { MongoBulkWriteError, MongoServerError, type Collection, type Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { canonicalJson } from '../../common/json/canonical';
import type { Deadline } from './deadline';
import { comparisonFailure, readFailure, writeFailure } from './errors';

export interface RecordDoc {
  _id: string;
  collection: string;
  /**
   * The client identity of the token that stored it: a replay must come from the same
   * client (any of its tokens). Records stored before clients existed have none; their
   * token id stands in, which is what that token's client identity is.
   */
  client?: string;
  /** The token that stored it, for the audit trail. */
  tokenId: string;
  /** SHA-256 of the canonical JSON of `data` (see bodyHash). */
  bodySha256: string;
  data: Record<string, unknown>;
  createdAt: Date;
}

export type NewRecord = Omit<RecordDoc, 'createdAt' | 'client'> & { client: string };

export interface StoredRecord {
  id: string;
  collection: string;
  data: Record<string, unknown>;
  createdAt: string;
}

/** MongoDB's DuplicateKey. */
const DUPLICATE_KEY = 11000;
/** BadValue: FerretDB's answer to a document it cannot store. */
const BAD_VALUE = 2;

/**
 * Records, keyed by the request id (or the Idempotency-Key's id) that created them.
 * Inserting the same request twice stores one document and gives the same answer; the
 * same id with different content (a client reusing an Idempotency-Key for another body)
 * is a conflict, not an overwrite. A write is reported only after the database
 * acknowledged it durably, and every database call stays inside the request's deadline.
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

  /**
   * The body's fingerprint: SHA-256 over its canonical JSON (object keys sorted at every
   * depth), so the same record re-serialised with its keys in another order is a replay,
   * not a conflict.
   */
  static bodyHash(data: unknown): string {
    return createHash('sha256').update(canonicalJson(data), 'utf8').digest('hex');
  }

  /** Returns true when this call stored the record, false when it was already there. */
  async insert(doc: NewRecord, opts: { deadline?: Deadline; now?: Date } = {}): Promise<boolean> {
    try {
      await this.records.insertOne({ ...doc, createdAt: opts.now ?? new Date() }, opts.deadline ? opts.deadline.operation() : {});
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return this.replay(doc, opts.deadline);
      // A document the engine cannot store (FerretDB: nested arrays, infinite numbers such
      // as JSON's 1e400). The client's input, not an outage; nothing stored.
      if (err instanceof MongoServerError && err.code === BAD_VALUE) {
        throw new ApiError('schemaViolation', 'the record holds a value the database cannot store (nested arrays or out-of-range numbers)', { cause: err });
      }
      throw writeFailure(err);
    }
  }

  /**
   * Stores several records in one database call, for a group commit: one transaction and one
   * sync to disk for all of them where an insert each costs a sync each. Unordered, so one
   * record's failure does not hold back the others. Answers per record, in order, what
   * insert() would have: true (stored), false (the same record was already there), or the
   * error that record earned. A failure of the call itself (connection, deadline) is every
   * record's outcome, classified as insert() classifies it.
   */
  async insertMany(docs: readonly NewRecord[], opts: { deadline?: Deadline; now?: Date } = {}): Promise<(boolean | Error)[]> {
    if (docs.length === 0) return [];
    const createdAt = opts.now ?? new Date();
    const outcomes: (boolean | Error)[] = docs.map(() => true);
    try {
      await this.records.insertMany(
        docs.map((d) => ({ ...d, createdAt })),
        { ordered: false, ...(opts.deadline ? opts.deadline.operation() : {}) },
      );
      return outcomes;
    } catch (err) {
      const perRecord = err instanceof MongoBulkWriteError && !err.writeConcernError ? [err.writeErrors].flat() : [];
      if (perRecord.length === 0) return docs.map(() => writeFailure(err));
      await Promise.all(
        perRecord.map(async (w) => {
          const doc = docs[w.index];
          if (!doc) return;
          if (w.code === DUPLICATE_KEY) {
            outcomes[w.index] = await this.replay(doc, opts.deadline).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
          } else if (w.code === BAD_VALUE) {
            outcomes[w.index] = new ApiError('schemaViolation', 'the record holds a value the database cannot store (nested arrays or out-of-range numbers)');
          } else {
            outcomes[w.index] = new ApiError('unavailable', 'storage refused the write; nothing was stored');
          }
        }),
      );
      return outcomes;
    }
  }

  /** The id is taken: the same record from the same client is a replay, anything else a conflict. */
  private async replay(doc: NewRecord, deadline: Deadline | undefined): Promise<boolean> {
    let existing: Pick<RecordDoc, 'collection' | 'client' | 'tokenId' | 'bodySha256'> | null;
    try {
      existing = await this.records.findOne({ _id: doc._id }, { projection: { collection: 1, client: 1, tokenId: 1, bodySha256: 1 }, ...(deadline ? deadline.operation() : {}) });
    } catch (err) {
      throw comparisonFailure(err);
    }
    if (existing && existing.collection === doc.collection && (existing.client ?? existing.tokenId) === doc.client && existing.bodySha256 === doc.bodySha256) return false;
    throw new ApiError('conflict', 'this id was already used for a different record');
  }

  async get(collection: string, id: string, opts: { deadline?: Deadline } = {}): Promise<StoredRecord | undefined> {
    let doc: RecordDoc | null;
    try {
      doc = await this.records.findOne({ _id: id, collection }, opts.deadline ? opts.deadline.operation() : {});
    } catch (err) {
      throw readFailure(err);
    }
    if (!doc) return undefined;
    return { id: doc._id, collection: doc.collection, data: doc.data, createdAt: doc.createdAt.toISOString() };
  }
}
