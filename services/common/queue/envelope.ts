import { z } from 'zod';
import { ApiError } from '../errors/api-error';
import { NonstopError } from '../errors/nonstop-error';
import { LIST_CURSOR_MAX_CHARS, LIST_LIMIT_MAX } from '../http/list-query';
import { GATEWAY_ID, REQUEST_ID } from '../ids/names';
import { PROTOCOL_VERSION } from './keys';
import { MAX_BUDGET_MS } from './timing';

/**
 * Queue protocol v2: what a gateway puts on the queue and what comes back. The gateway
 * is untrusted from the broker's side, so decoding checks every field; anything that does
 * not decode is a poison message with a reason, never an exception that escapes.
 */
export const MAX_ENVELOPE_BYTES = 2 * 1024 * 1024;

const requestSchema = z
  .object({
    v: z.literal(PROTOCOL_VERSION),
    id: z.string().regex(REQUEST_ID),
    gw: z.string().regex(GATEWAY_ID),
    /**
     * Milliseconds left for this request when the gateway enqueued it, measured on the
     * gateway's monotonic clock. No absolute time crosses hosts: their clocks may differ.
     */
    budgetMs: z.number().int().min(1).max(MAX_BUDGET_MS),
    /** POST stores, GET reads one record, LIST pages through a collection, DELETE erases one. */
    method: z.enum(['POST', 'GET', 'LIST', 'DELETE']),
    collection: z.string().max(200),
    recordId: z.string().max(200).optional(),
    /**
     * A LIST's query (common/http/list-query.ts), already in its types: strings stay strings
     * and nothing else fits, so no object can ride in on it. The broker checks the shapes.
     */
    query: z
      .object({
        limit: z.number().int().min(1).max(LIST_LIMIT_MAX).optional(),
        cursor: z.string().max(LIST_CURSOR_MAX_CHARS).optional(),
        createdFrom: z.string().max(64).optional(),
        createdTo: z.string().max(64).optional(),
      })
      .strict()
      .optional(),
    /** The client's Idempotency-Key; core derives a keyed record's id from it. */
    key: z.string().regex(/^[\x21-\x7e]{1,128}$/).optional(),
    token: z.string().max(512),
    body: z.string().optional(),
  })
  .strict();

export type RequestEnvelope = z.infer<typeof requestSchema>;

const replySchema = z
  .object({
    v: z.literal(PROTOCOL_VERSION),
    id: z.string().regex(REQUEST_ID),
    status: z.number().int().min(100).max(599),
    body: z.unknown(),
  })
  .strict();

export type ReplyEnvelope = z.infer<typeof replySchema>;

export type PoisonReason = 'oversize' | 'bad_json' | 'unknown_version' | 'bad_shape';

export class PoisonMessageError extends NonstopError {
  constructor(readonly reason: PoisonReason, message: string) {
    super(`poison_${reason}`, message, 400);
  }
}

/**
 * The envelope's text, refused whole (413 body_too_large, nothing queued) when it is larger
 * than the broker decodes. A body within MAX_BODY_BYTES can still grow past it here: as a
 * JSON string each `"`, `\\` and whitespace escape of the body takes two bytes, so a body of
 * backslashes doubles. Sent anyway, it was either refused by Redis's proto-max-bulk-len with
 * a protocol error that drops the lane's connection (and was re-sent until its deadline), or
 * dead-lettered unanswered: a 504 "may have been stored" for a request never stored.
 */
export function encodeRequest(envelope: RequestEnvelope): string {
  const text = JSON.stringify(envelope);
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most envelopes are sized without a pass over them.
  if (text.length > MAX_ENVELOPE_BYTES / 3 && Buffer.byteLength(text, 'utf8') > MAX_ENVELOPE_BYTES) {
    throw new ApiError('bodyTooLarge', `the request is larger than the queue carries once encoded (${MAX_ENVELOPE_BYTES} bytes): its body escapes too many characters`);
  }
  return text;
}

export function decodeRequest(text: string): RequestEnvelope {
  if (Buffer.byteLength(text, 'utf8') > MAX_ENVELOPE_BYTES) {
    throw new PoisonMessageError('oversize', `envelope larger than ${MAX_ENVELOPE_BYTES} bytes`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PoisonMessageError('bad_json', 'envelope is not JSON');
  }
  if (typeof raw === 'object' && raw !== null && 'v' in raw && (raw).v !== PROTOCOL_VERSION) {
    throw new PoisonMessageError('unknown_version', `protocol version ${JSON.stringify((raw).v)} is not ${PROTOCOL_VERSION}`);
  }
  const parsed = requestSchema.safeParse(raw);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => i.path.join('.') || '(root)').join(', ');
    throw new PoisonMessageError('bad_shape', `envelope fields invalid: ${where}`);
  }
  return parsed.data;
}

export function encodeReply(reply: ReplyEnvelope): string {
  return JSON.stringify(reply);
}

export function decodeReply(text: string): ReplyEnvelope {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PoisonMessageError('bad_json', 'reply is not JSON');
  }
  const parsed = replySchema.safeParse(raw);
  if (!parsed.success) throw new PoisonMessageError('bad_shape', 'reply fields invalid');
  return parsed.data;
}
