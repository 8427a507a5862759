import { Binary, MongoBulkWriteError, MongoServerError, type Collection, type Db, type Filter } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { ErrorCodes } from '../../common/errors/codes';
import { LIST_LIMIT_DEFAULT, timestampMs, type ListQuery } from '../../common/http/list-query';
import { canonicalJson } from '../../common/json/canonical';
import type { KeyLookup } from './data-keys';
import type { Deadline } from './deadline';
import { comparisonFailure, eraseFailure, readFailure, writeFailure } from './errors';
import { decodeCursor, encodeCursor } from './list-cursor';
import { openRecord, sealRecord, type RecordBinding, type Sealed } from './record-cipher';

/** A record's content as stored: record-cipher.ts's Sealed, in BSON binaries. */
export interface SealedDoc {
  v: 1;
  keyId: string;
  wrappedKey: Binary;
  nonce: Binary;
  ciphertext: Binary;
  tag: Binary;
}

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
  /** The content (its canonical JSON), encrypted: see record-cipher.ts. */
  enc?: SealedDoc;
  /**
   * Records stored before encryption hold their content in clear, with a SHA-256 of it,
   * until `nonstop-admin keys rewrap` encrypts them (and removes both). Read as they are.
   */
  data?: Record<string, unknown>;
  bodySha256?: string;
  createdAt: Date;
}

export interface NewRecord {
  _id: string;
  collection: string;
  client: string;
  tokenId: string;
  data: Record<string, unknown>;
}

export interface StoredRecord {
  id: string;
  collection: string;
  data: Record<string, unknown>;
  createdAt: string;
}

/** A listed record that does not decrypt: listed without content, so it never blocks the rest. */
export interface UnreadableRecord {
  id: string;
  collection: string;
  createdAt: string;
  error: 'record_unreadable';
}

export interface RecordPage {
  records: (StoredRecord | UnreadableRecord)[];
  /** Where the next page starts; null when this page reached the end. */
  nextCursor: string | null;
}

/**
 * A page stops adding records past this many bytes of JSON (it always holds at least one),
 * so a page of records near the 1 MiB body limit still fits the broker's 4 MiB read of
 * core's answer and the queue's reply.
 */
export const LIST_PAGE_MAX_BYTES = 1024 * 1024;
/** Records fetched per database round trip while filling a page: at most 16 of up to 1 MiB each. */
const LIST_BATCH = 16;

/**
 * What erase needs from the engine so an erased record leaves no copy in its files
 * (db/sqlite-wal-purge.ts for FerretDB). `pending`: a purge was asked for and has not
 * completed; erase waits for it even when it found nothing to delete, so a retried DELETE
 * answers only once the first one's purge is done.
 */
export interface ErasePurge {
  readonly pending: boolean;
  purge(): Promise<void>;
}

/** MongoDB's DuplicateKey. */
const DUPLICATE_KEY = 11000;

export function toSealedDoc(s: Sealed): SealedDoc {
  return { v: 1, keyId: s.keyId, wrappedKey: new Binary(s.wrappedKey), nonce: new Binary(s.nonce), ciphertext: new Binary(s.ciphertext), tag: new Binary(s.tag) };
}

export function fromSealedDoc(d: SealedDoc): Sealed {
  return { keyId: d.keyId, wrappedKey: Buffer.from(d.wrappedKey.buffer), nonce: Buffer.from(d.nonce.buffer), ciphertext: Buffer.from(d.ciphertext.buffer), tag: Buffer.from(d.tag.buffer) };
}

/**
 * The content as canonical JSON (the text that is encrypted). The HTTP layer refuses what
 * has no JSON form (an infinite number) before this; a caller that did not is refused the
 * same way, since JSON.stringify would have written such a number as null.
 */
function contentText(data: Record<string, unknown>): string {
  try {
    return canonicalJson(data);
  } catch (err) {
    throw new ApiError('schemaViolation', 'the record holds a value that has no JSON form (an infinite number)', { cause: err });
  }
}

/**
 * Records, keyed by the request id (or the Idempotency-Key's id) that created them.
 * Inserting the same request twice stores one document and gives the same answer; the
 * same id with different content (a client reusing an Idempotency-Key for another body)
 * is a conflict, not an overwrite. A write is reported only after the database
 * acknowledged it durably, and every database call stays inside the request's deadline.
 *
 * Content is stored encrypted (record-cipher.ts) under the key file's active key; the
 * database sees only the id, collection, client, token id, time and ciphertext.
 */
export class RecordStore {
  private readonly records: Collection<RecordDoc>;

  constructor(
    db: Db,
    private readonly keys: KeyLookup,
    private readonly erasePurge?: ErasePurge,
  ) {
    this.records = db.collection<RecordDoc>('records');
  }

  async init(): Promise<void> {
    await this.records.createIndex({ collection: 1, createdAt: 1 }, { name: 'collection_createdAt' });
    await this.records.db.collection('tokens').createIndex({ createdAt: 1 }, { name: 'createdAt' });
  }

  /** The document to insert, and the content text a replay is compared by. */
  private seal(doc: NewRecord, createdAt: Date): { stored: RecordDoc; text: string } {
    const text = contentText(doc.data);
    const enc = toSealedDoc(sealRecord(this.keys, { id: doc._id, collection: doc.collection }, text));
    return { stored: { _id: doc._id, collection: doc.collection, client: doc.client, tokenId: doc.tokenId, enc, createdAt }, text };
  }

  /** Returns true when this call stored the record, false when it was already there. */
  async insert(doc: NewRecord, opts: { deadline?: Deadline; now?: Date } = {}): Promise<boolean> {
    const { stored, text } = this.seal(doc, opts.now ?? new Date());
    try {
      await this.records.insertOne(stored, opts.deadline ? opts.deadline.operation() : {});
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return this.replay(doc, text, opts.deadline);
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
    const createdAt = opts.now ?? new Date();
    const outcomes: (boolean | Error)[] = docs.map(() => true);
    // Sealed one by one: a record without a JSON form is its own refusal, not the batch's.
    const sealed: { index: number; stored: RecordDoc; text: string }[] = [];
    docs.forEach((d, index) => {
      try {
        sealed.push({ index, ...this.seal(d, createdAt) });
      } catch (err) {
        outcomes[index] = err instanceof Error ? err : new Error(String(err));
      }
    });
    if (sealed.length === 0) return outcomes;
    try {
      await this.records.insertMany(
        sealed.map((s) => s.stored),
        { ordered: false, ...(opts.deadline ? opts.deadline.operation() : {}) },
      );
      return outcomes;
    } catch (err) {
      const perRecord = err instanceof MongoBulkWriteError && !err.writeConcernError ? [err.writeErrors].flat() : [];
      if (perRecord.length === 0) {
        for (const s of sealed) outcomes[s.index] = writeFailure(err);
        return outcomes;
      }
      await Promise.all(
        perRecord.map(async (w) => {
          const s = sealed[w.index];
          if (!s) return;
          if (w.code === DUPLICATE_KEY) {
            outcomes[s.index] = await this.replay(docs[s.index]!, s.text, opts.deadline).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
          } else {
            outcomes[s.index] = new ApiError('unavailable', 'storage refused the write; nothing was stored');
          }
        }),
      );
      return outcomes;
    }
  }

  /**
   * The id is taken: the same record from the same client is a replay, anything else a
   * conflict. The content is compared by decrypting the stored record and comparing its
   * canonical JSON with this one's, not by a stored hash: a hash of the content is a
   * plaintext leak (short or guessable content, `{"approved":true}`, is found by hashing
   * guesses against a copy of the database), and an HMAC under yet another key would still
   * show which records hold equal content. A replay is rare (a retry), so one decryption
   * there costs the normal path nothing.
   */
  private async replay(doc: NewRecord, text: string, deadline: Deadline | undefined): Promise<boolean> {
    let existing: RecordDoc | null;
    try {
      existing = await this.records.findOne({ _id: doc._id }, deadline ? deadline.operation() : {});
    } catch (err) {
      throw comparisonFailure(err);
    }
    if (!existing || existing.collection !== doc.collection || (existing.client ?? existing.tokenId) !== doc.client) throw new ApiError('conflict', 'this id was already used for a different record');
    if (this.contentTextOf(existing) === text) return false;
    throw new ApiError('conflict', 'this id was already used for a different record');
  }

  /** The stored content as canonical JSON; record_unreadable (500) when it does not decrypt. */
  private contentTextOf(doc: RecordDoc): string {
    const b: RecordBinding = { id: doc._id, collection: doc.collection };
    if (doc.enc) return openRecord(this.keys, b, fromSealedDoc(doc.enc));
    if (doc.data) return canonicalJson(doc.data);
    throw new ApiError('recordUnreadable', 'the record holds no content');
  }

  /**
   * One page of a collection in (createdAt, id) order, after the cursor's position, within
   * [createdFrom, createdTo). The filter is built from typed values only: the collection
   * name, Dates and a UUID string, whatever the query held. A record stored while a client
   * pages has a createdAt at or after the moment it was stored, so it lands after every
   * page already returned: never twice, and every record stored before listing began is
   * returned once. Uses only $gte/$lt/$gt/$or and a two-key sort, which FerretDB v1 and
   * MongoDB both have (FerretDB filters and sorts such a query in memory, reading the table).
   */
  async list(collection: string, query: ListQuery, opts: { deadline?: Deadline } = {}): Promise<RecordPage> {
    const limit = query.limit ?? LIST_LIMIT_DEFAULT;
    const fromMs = query.createdFrom === undefined ? undefined : timestampMs(query.createdFrom, 'createdFrom');
    const toMs = query.createdTo === undefined ? undefined : timestampMs(query.createdTo, 'createdTo');
    const scope = { collection, fromMs, toMs };
    const after = query.cursor === undefined ? undefined : decodeCursor(this.keys, scope, query.cursor);
    const filter: Filter<RecordDoc> = { collection };
    if (fromMs !== undefined || toMs !== undefined) {
      filter.createdAt = { ...(fromMs !== undefined ? { $gte: new Date(fromMs) } : {}), ...(toMs !== undefined ? { $lt: new Date(toMs) } : {}) };
    }
    if (after) filter.$or = [{ createdAt: { $gt: after.createdAt } }, { createdAt: after.createdAt, _id: { $gt: after.id } }];

    const records: RecordPage['records'] = [];
    let bytes = 0;
    let last: RecordDoc | undefined;
    let more = false;
    try {
      const cursor = this.records.find(filter, { sort: { createdAt: 1, _id: 1 }, limit: limit + 1, batchSize: LIST_BATCH, ...(opts.deadline ? opts.deadline.operation() : {}) });
      // Leaving the loop early closes the database cursor.
      for await (const doc of cursor) {
        if (records.length === limit) {
          more = true;
          break;
        }
        const item = this.listed(doc);
        const size = Buffer.byteLength(JSON.stringify(item), 'utf8') + 1;
        if (records.length > 0 && bytes + size > LIST_PAGE_MAX_BYTES) {
          more = true;
          break;
        }
        records.push(item);
        bytes += size;
        last = doc;
      }
    } catch (err) {
      throw readFailure(err);
    }
    return { records, nextCursor: more && last ? encodeCursor(this.keys, scope, { createdAt: last.createdAt, id: last._id }) : null };
  }

  private listed(doc: RecordDoc): StoredRecord | UnreadableRecord {
    try {
      return this.stored(doc);
    } catch (err) {
      if (err instanceof ApiError && err.code === ErrorCodes.recordUnreadable.code) {
        return { id: doc._id, collection: doc.collection, createdAt: doc.createdAt.toISOString(), error: 'record_unreadable' };
      }
      throw err;
    }
  }

  /** The record as the API answers it; record_unreadable (500) when its content does not decrypt. */
  private stored(doc: RecordDoc): StoredRecord {
    // Authenticated: the text is what this store encrypted for this id and collection.
    const data = doc.enc ? (JSON.parse(openRecord(this.keys, { id: doc._id, collection: doc.collection }, fromSealedDoc(doc.enc))) as Record<string, unknown>) : doc.data;
    if (!data) throw new ApiError('recordUnreadable', 'the record holds no content');
    return { id: doc._id, collection: doc.collection, data, createdAt: doc.createdAt.toISOString() };
  }

  /**
   * Erases a record of this collection: true when this call deleted it, false when there
   * was none (never stored, already erased, or another collection's: left untouched). With
   * an ErasePurge, it returns only after the engine's files hold no copy of it.
   */
  async erase(collection: string, id: string, opts: { deadline?: Deadline } = {}): Promise<boolean> {
    let deleted = false;
    try {
      // By _id alone, the collection compared here, as get() does: FerretDB finds an _id-only
      // filter by its primary key but reads and decodes the whole table for {_id, collection}
      // (a delete through a 300 ms budget ran out on a table of a few hundred records). The
      // record cannot have moved to another collection in between unless it was erased and an
      // insert chose its id again, which only a compromised gateway can do, and such a gateway
      // already holds every token sent through it.
      const found = await this.records.findOne({ _id: id }, { projection: { collection: 1 }, ...(opts.deadline ? opts.deadline.operation() : {}) });
      if (found?.collection === collection) deleted = (await this.records.deleteOne({ _id: id }, opts.deadline ? opts.deadline.operation() : {})).deletedCount === 1;
    } catch (err) {
      throw eraseFailure(err);
    }
    if (this.erasePurge && (deleted || this.erasePurge.pending)) await withinDeadline(this.erasePurge.purge(), opts.deadline);
    return deleted;
  }

  async get(collection: string, id: string, opts: { deadline?: Deadline } = {}): Promise<StoredRecord | undefined> {
    let doc: RecordDoc | null;
    try {
      // By _id alone, the collection compared here: FerretDB (SQLite) looks up an _id-only
      // filter by its primary key but scans the whole table for {_id, collection}, which
      // measured 19 ms per read at 2,000 records against 3 ms (bench/at-rest.ts found it).
      doc = await this.records.findOne({ _id: id }, opts.deadline ? opts.deadline.operation() : {});
    } catch (err) {
      throw readFailure(err);
    }
    if (!doc || doc.collection !== collection) return undefined;
    return this.stored(doc);
  }
}

/**
 * The purge as the request's budget allows: past it, 504 deadline_exceeded (the record is
 * already unreadable; its purge goes on, and a retried DELETE answers once it is done).
 */
async function withinDeadline(purge: Promise<void>, deadline: Deadline | undefined): Promise<void> {
  if (!deadline) return purge;
  if (deadline.signal.aborted) throw new ApiError('deadline', 'the record is erased; purging its copies from the database files did not finish in time: retry the DELETE');
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new ApiError('deadline', 'the record is erased; purging its copies from the database files did not finish in time: retry the DELETE'));
    deadline.signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([purge, aborted]);
  } finally {
    if (onAbort) deadline.signal.removeEventListener('abort', onAbort);
  }
}
