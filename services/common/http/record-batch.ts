/**
 * The contract of core's batch insert, between the broker (services/broker/core-client) and
 * core (services/core/http/batch-route.ts): group commit. The broker passes the records that
 * arrive while its previous batch is with core as one request; core stores them in one
 * database call (one transaction, one sync to disk) and answers per record, each exactly as
 * the single insert would (201, or the error that record earned). Every record is still
 * idempotent by its id, and each client is answered only after its own record is durable.
 */
export const RECORD_BATCH_PATH = '/v1/batches/records';

/** Records in one batch at most. */
export const RECORD_BATCH_MAX_RECORDS = 64;

/**
 * The largest batch body. A record alone can be as large as core's body limit (1 MiB by
 * default), so a batch is at least one record whatever its size; the broker closes a batch
 * before it would cross this.
 */
export const RECORD_BATCH_MAX_BYTES = 4 * 1024 * 1024;

/** One record of a batch: what the single insert carries in its path, headers and body. */
export interface RecordBatchItem {
  requestId: string;
  collection: string;
  token: string;
  /** The client's Idempotency-Key, when it sent one. */
  key?: string | undefined;
  /** The record as the client's JSON text: core checks it as it checks a single body. */
  body: string;
}

export interface RecordBatchRequest {
  records: RecordBatchItem[];
}

/** Core's answer for one record, in the order of the request. */
export interface RecordBatchResult {
  status: number;
  body: unknown;
}

export interface RecordBatchResponse {
  results: RecordBatchResult[];
}
