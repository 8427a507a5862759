import { Binary, type AnyBulkWriteOperation, type Collection, type Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { canonicalJson } from '../../common/json/canonical';
import type { Logger } from '../../common/log/logger';
import type { DataKeyRing, KeyLookup } from './data-keys';
import { rewrapRecord, sealRecord } from './record-cipher';
import { toSealedDoc, type RecordDoc } from './records';

/** Where core says which key it wraps new records with (one document, `_id: 'service'`). */
const STATUS_COLLECTION = 'dataKeyStatus';
/** Records read and rewrapped per round trip (a record still in clear is read whole, up to 1 MiB). */
const PAGE = 64;

interface StatusDoc {
  _id: string;
  active: string;
  at: Date;
}

export interface KeyUsage {
  /** Records per key id that wraps their data key. */
  byKey: Record<string, number>;
  /** Records stored before encryption, content still in clear. */
  plaintext: number;
}

export interface RewrapResult {
  /** Records whose data key was rewrapped to the target key. */
  rewrapped: number;
  /** Records stored in clear that were encrypted. */
  encrypted: number;
  /** Records that could not be decrypted to rewrap (their key missing, or tampered): left as they are. */
  unreadable: string[];
}

/**
 * Key rotation over the records collection, for nonstop-admin and for the service's side of
 * it. Records are insert-only; a rewrap is their only update, and it is a compare-and-set
 * on the key id and wrapped key it read: a record rewrapped meanwhile by another run is
 * left to that run, never overwritten with a stale wrapping.
 */
export class KeyRotation {
  private readonly records: Collection<RecordDoc>;
  private readonly status: Collection<StatusDoc>;

  constructor(db: Db) {
    this.records = db.collection<RecordDoc>('records');
    this.status = db.collection<StatusDoc>(STATUS_COLLECTION);
  }

  /** The service: the key it now wraps new records with (called at start and after each key file change). */
  async announce(active: string, now = new Date()): Promise<void> {
    await this.status.updateOne({ _id: 'service' }, { $set: { active, at: now } }, { upsert: true });
  }

  /**
   * The service's side of a rotation: re-reads the key file every `intervalMs` and, whenever
   * the active key is not the one last announced (a change, or an announcement that failed),
   * announces it. Returns the stop.
   */
  follow(ring: DataKeyRing, intervalMs: number, log: Logger): () => void {
    let announced: string | undefined;
    let running = false;
    const tick = async (): Promise<void> => {
      ring.reload();
      const active = ring.active().id;
      if (active === announced) return;
      try {
        await this.announce(active);
        announced = active;
        log.info('new records are wrapped under data key', { active });
      } catch (err) {
        log.error('could not record the active data key in the database; retrying (a rotation waits for it)', { err: (err as Error).message });
      }
    };
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      void tick().finally(() => (running = false));
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** The key the service last said it wraps new records with, or undefined if it never said. */
  async serviceActiveKey(): Promise<string | undefined> {
    return (await this.status.findOne({ _id: 'service' }))?.active;
  }

  async usage(): Promise<KeyUsage> {
    const byKey: Record<string, number> = {};
    for (const id of (await this.records.distinct('enc.keyId')) as string[]) byKey[id] = await this.records.countDocuments({ 'enc.keyId': id });
    const plaintext = await this.records.countDocuments({ enc: { $exists: false } });
    return { byKey, plaintext };
  }

  async recordsUnder(keyId: string): Promise<number> {
    return this.records.countDocuments({ 'enc.keyId': keyId });
  }

  /**
   * Wraps every record's data key under `keys.active()`, and encrypts every record stored in
   * clear; repeats until a pass finds none left, so records written meanwhile under an older
   * key are rewrapped too. Only 60 bytes per record change, never the content's ciphertext.
   */
  async rewrapAll(keys: KeyLookup): Promise<RewrapResult> {
    const to = keys.active();
    const result: RewrapResult = { rewrapped: 0, encrypted: 0, unreadable: [] };
    for (;;) {
      // $ne also matches records with no `enc` at all: those stored in clear. The content's
      // ciphertext is not read: only the wrapped key changes.
      const page = await this.records
        .find({ 'enc.keyId': { $ne: to.id }, _id: { $nin: result.unreadable } }, { projection: { collection: 1, 'enc.keyId': 1, 'enc.wrappedKey': 1, data: 1 } })
        .limit(PAGE)
        .toArray();
      if (page.length === 0) return result;
      const progress = result.rewrapped + result.encrypted + result.unreadable.length;
      const rewraps: AnyBulkWriteOperation<RecordDoc>[] = [];
      const encrypts: AnyBulkWriteOperation<RecordDoc>[] = [];
      for (const doc of page) {
        const b = { id: doc._id, collection: doc.collection };
        try {
          if (doc.enc) {
            const next = rewrapRecord(keys, b, { keyId: doc.enc.keyId, wrappedKey: Buffer.from(doc.enc.wrappedKey.buffer) }, to);
            rewraps.push({
              updateOne: {
                filter: { _id: doc._id, 'enc.keyId': doc.enc.keyId, 'enc.wrappedKey': doc.enc.wrappedKey },
                update: { $set: { 'enc.keyId': next.keyId, 'enc.wrappedKey': new Binary(next.wrappedKey) } },
              },
            });
          } else if (doc.data) {
            const enc = toSealedDoc(sealRecord(keys, b, canonicalJson(doc.data)));
            encrypts.push({ updateOne: { filter: { _id: doc._id, enc: { $exists: false } }, update: { $set: { enc }, $unset: { data: '', bodySha256: '' } } } });
          } else {
            result.unreadable.push(doc._id);
          }
        } catch (err) {
          // A stored-in-clear record whose content has no canonical JSON is as unreadable as a tampered one.
          if (!(err instanceof ApiError && err.code === 'record_unreadable') && !(err instanceof TypeError)) throw err;
          result.unreadable.push(doc._id);
        }
      }
      // One round trip per page: under concurrent writes each update waits its turn for the
      // database's write lock, and one at a time a large collection would take hours.
      if (rewraps.length > 0) result.rewrapped += (await this.records.bulkWrite(rewraps, { ordered: false })).modifiedCount;
      if (encrypts.length > 0) result.encrypted += (await this.records.bulkWrite(encrypts, { ordered: false })).modifiedCount;
      // Every record of a page either changed, was changed by another run, or was set aside:
      // a page where none did means the compare-and-set cannot match, and looping would not end.
      if (result.rewrapped + result.encrypted + result.unreadable.length === progress) {
        const again = await this.records.countDocuments({ _id: { $in: page.map((d) => d._id) }, 'enc.keyId': { $ne: to.id } });
        if (again === page.length) throw new Error(`rewrap made no progress on ${page.length} records: their compare-and-set never matched`);
      }
    }
  }
}
