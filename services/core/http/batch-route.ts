import { z } from 'zod';
import { ApiError, errorBody } from '../../common/errors/api-error';
import { describeClientError } from '../../common/http/client-error';
import { RECORD_BATCH_MAX_RECORDS, type RecordBatchItem, type RecordBatchResult } from '../../common/http/record-batch';
import { isCollectionName, isRequestId, TOKEN_SHAPE } from '../../common/ids/names';
import { DEFAULT_JSON_LIMITS, parseJsonRecord } from '../../common/json/limits';
import type { TokenStore } from '../auth/tokens';
import type { Deadline } from '../storage/deadline';
import { keyedRecordId } from '../storage/record-id';
import type { NewRecord, RecordStore } from '../storage/records';
import { idempotencyKey } from './headers';

const batchSchema = z
  .object({
    records: z
      .array(
        z
          .object({
            requestId: z.string(),
            collection: z.string(),
            token: z.string(),
            key: z.string().optional(),
            body: z.string(),
          })
          .strict(),
      )
      .min(1)
      .max(RECORD_BATCH_MAX_RECORDS),
  })
  .strict();

/** Parses a batch request's text; a batch that is not one is refused whole (400). */
export function parseRecordBatch(text: string): RecordBatchItem[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ApiError('badJson', 'batch is not valid JSON');
  }
  const parsed = batchSchema.safeParse(raw);
  if (!parsed.success) throw new ApiError('badRequest', `batch must be {"records": [1-${RECORD_BATCH_MAX_RECORDS} records]}`);
  return parsed.data.records;
}

export interface RecordBatchDeps {
  records: RecordStore;
  tokens: TokenStore;
  maxBodyBytes: number;
}

function failed(err: unknown): RecordBatchResult {
  const { status, code, message } = describeClientError(err);
  return { status, body: errorBody(code, message) };
}

/**
 * Each record checked, authorized and keyed exactly as the single insert does it (app.ts),
 * then every one that passed stored in one database call. A record's refusal is its own
 * answer and never the others'.
 */
export async function storeRecordBatch(deps: RecordBatchDeps, items: readonly RecordBatchItem[], deadline: Deadline): Promise<RecordBatchResult[]> {
  const results: (RecordBatchResult | undefined)[] = items.map(() => undefined);
  const docs: { index: number; doc: NewRecord }[] = [];
  await Promise.all(
    items.map(async (item, index) => {
      try {
        if (!isCollectionName(item.collection)) throw new ApiError('badCollection', 'invalid collection name');
        if (!isRequestId(item.requestId)) throw new ApiError('badRequest', 'requestId must be a UUID');
        const key = idempotencyKey(item.key);
        if (!TOKEN_SHAPE.test(item.token)) throw new ApiError('unauthenticated', 'missing or malformed bearer token');
        const record = parseJsonRecord(item.body, { ...DEFAULT_JSON_LIMITS, maxBytes: deps.maxBodyBytes });
        const grant = await deps.tokens.authorize(item.token, item.collection, 'write', { deadline });
        const id = key === undefined ? item.requestId : keyedRecordId(grant.client, item.collection, key);
        docs.push({ index, doc: { _id: id, collection: item.collection, client: grant.client, tokenId: grant.id, data: record } });
      } catch (err) {
        results[index] = failed(err);
      }
    }),
  );
  const outcomes = await deps.records.insertMany(
    docs.map((d) => d.doc),
    { deadline },
  );
  docs.forEach(({ index, doc }, i) => {
    const outcome = outcomes[i];
    results[index] = outcome instanceof Error ? failed(outcome) : { status: 201, body: { id: doc._id } };
  });
  return results.map((r) => r ?? failed(new Error('record left without an answer')));
}
