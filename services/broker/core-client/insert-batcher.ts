import { performance } from 'node:perf_hooks';
import { ApiError } from '../../common/errors/api-error';
import { RECORD_BATCH_MAX_BYTES, RECORD_BATCH_MAX_RECORDS, type RecordBatchItem, type RecordBatchResult } from '../../common/http/record-batch';
import type { CoreCall, CoreClient, CoreResponse } from './client';

export interface InsertBatcherOptions {
  /** Records in one batch at most; 1 sends every insert on its own. */
  maxRecords: number;
  /** Batches with core at once; inserts arriving meanwhile wait and travel together. */
  maxInFlight: number;
}

/** The broker's defaults: WORKER_CONCURRENCY (32) records fit one batch; two batches overlap core's work with the next one's transfer. */
export const DEFAULT_BATCH_MAX_IN_FLIGHT = 2;

/** Observes each batch sent (nonstop_broker_core_batch_records in the broker). */
export interface BatchSizeObserver {
  observe(records: number): void;
}

interface Waiting {
  item: RecordBatchItem;
  record: Record<string, unknown>;
  /** An upper bound of the item's size in the batch body: its body escaped, plus its fields. */
  bytes: number;
  deadline: number;
  resolve: (res: CoreResponse) => void;
  reject: (err: unknown) => void;
}

/** Room for an item's fields (token, ids, key, JSON punctuation) besides its body. */
const ITEM_OVERHEAD_BYTES = 1024;

/**
 * Group commit on the broker's side. An insert goes to core at once when fewer than
 * `maxInFlight` batches are with core; otherwise it waits, and every insert that arrived
 * while core was busy goes in the next batch, which core stores in one database call (one
 * sync to disk). So a quiet broker adds no delay, and a busy one pays for a disk sync per
 * batch instead of per record. Inserts of the same event-loop turn (one read of the queue)
 * always travel together. A batch of one uses the single insert, as before batching.
 * Every caller gets its own record's answer, after core has it durably.
 */
export class InsertBatcher {
  private readonly waiting: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly core: Pick<CoreClient, 'insert' | 'insertBatch'>,
    private readonly opts: InsertBatcherOptions,
    private readonly sizes: BatchSizeObserver,
  ) {
    if (opts.maxRecords < 1 || opts.maxRecords > RECORD_BATCH_MAX_RECORDS) throw new RangeError(`maxRecords must be 1-${RECORD_BATCH_MAX_RECORDS}`);
  }

  insert(call: CoreCall, record: Record<string, unknown>): Promise<CoreResponse> {
    if (this.opts.maxRecords === 1) return this.core.insert(call, record);
    const body = JSON.stringify(record);
    return new Promise<CoreResponse>((resolve, reject) => {
      this.waiting.push({
        item: { requestId: call.requestId, collection: call.collection, token: call.token, key: call.key, body },
        record,
        bytes: 2 * Buffer.byteLength(body) + ITEM_OVERHEAD_BYTES,
        deadline: call.deadline,
        resolve,
        reject,
      });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.opts.maxInFlight) return;
    this.scheduled = true;
    // The rest of this turn's inserts join first (a read of the queue hands over several).
    setImmediate(() => {
      this.scheduled = false;
      while (this.inFlight < this.opts.maxInFlight && this.waiting.length > 0) void this.send(this.take());
    });
  }

  /** The next batch from the front: at most maxRecords, and at least one record whatever its size. */
  private take(): Waiting[] {
    let bytes = 0;
    let n = 0;
    while (n < this.waiting.length && n < this.opts.maxRecords) {
      const next = this.waiting[n]!.bytes;
      if (n > 0 && bytes + next > RECORD_BATCH_MAX_BYTES) break;
      bytes += next;
      n++;
    }
    return this.waiting.splice(0, n);
  }

  private async send(batch: Waiting[]): Promise<void> {
    this.inFlight++;
    this.sizes.observe(batch.length);
    try {
      const now = performance.now();
      const live = batch.filter((w) => w.deadline > now);
      // Its budget was spent waiting for a batch to go (core slow or paused): never sent.
      // Answered as the gateway answers it at the same instant, 504 deadline_exceeded: a
      // "not stored" from here could overtake the gateway's own answer, and an earlier
      // attempt under the same key may still be on its way to core.
      for (const w of batch) if (w.deadline <= now) w.reject(new ApiError('deadline', 'the request ran out of time waiting for storage'));
      if (live.length === 1) {
        const w = live[0]!;
        await this.core.insert({ ...w.item, deadline: w.deadline }, w.record).then(w.resolve, w.reject);
      } else if (live.length > 1) {
        // The latest deadline: a record whose own budget ends first is answered late, as
        // "may have been stored" by its gateway, rather than cutting the others' time short.
        const deadline = Math.max(...live.map((w) => w.deadline));
        let results: RecordBatchResult[];
        try {
          results = await this.core.insertBatch(
            live.map((w) => w.item),
            deadline,
          );
        } catch (err) {
          for (const w of live) w.reject(err);
          return;
        }
        // A record core answered 503 (its database not reached: not stored) goes again on its
        // own, with the single insert's retries and backoff inside its budget, as it would have
        // without batching: a batch hit by a database hiccup must not turn into refusals.
        live.forEach((w, i) => {
          const result = results[i]!;
          if (result.status === 503) void this.core.insert({ ...w.item, deadline: w.deadline }, w.record).then(w.resolve, w.reject);
          else w.resolve(result);
        });
      }
    } finally {
      this.inFlight--;
      if (this.waiting.length > 0) this.schedule();
    }
  }
}
