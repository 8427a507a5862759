/**
 * Error codes that cross a tier boundary (client responses, queue replies, the JSON bodies
 * nginx sends for its own errors). Stable: clients and dashboards key on them. Each maps to
 * one HTTP status and says whether a write that got it is known not stored (`no`) or may
 * have been stored (`unknown`): a client may retry either with the same Idempotency-Key and
 * converge on one record, but only after `no` may it give up on the write and be sure.
 * Code that sends one names it here, never as a string literal.
 */
export type Stored = 'no' | 'unknown';

export const ErrorCodes = {
  badJson: { code: 'bad_json', status: 400, stored: 'no' },
  badEncoding: { code: 'bad_encoding', status: 400, stored: 'no' },
  badRequest: { code: 'bad_request', status: 400, stored: 'no' },
  badCollection: { code: 'bad_collection', status: 400, stored: 'no' },
  badRecordId: { code: 'bad_record_id', status: 400, stored: 'no' },
  /** A list request's query: an unknown or repeated parameter, a limit or timestamp out of shape. */
  badQuery: { code: 'bad_query', status: 400, stored: 'no' },
  /** A list cursor core did not issue for this collection and these filters (malformed, tampered, or another's). */
  badCursor: { code: 'bad_cursor', status: 400, stored: 'no' },
  /** nginx: the request headers exceeded its buffers (its own status 494, sent as 400). */
  headersTooLarge: { code: 'headers_too_large', status: 400, stored: 'no' },
  forbiddenKey: { code: 'forbidden_key', status: 422, stored: 'no' },
  tooDeep: { code: 'too_deep', status: 422, stored: 'no' },
  tooManyKeys: { code: 'too_many_keys', status: 422, stored: 'no' },
  stringTooLong: { code: 'string_too_long', status: 422, stored: 'no' },
  schemaViolation: { code: 'schema_violation', status: 422, stored: 'no' },
  notAnObject: { code: 'not_an_object', status: 422, stored: 'no' },
  bodyTooLarge: { code: 'body_too_large', status: 413, stored: 'no' },
  uriTooLong: { code: 'uri_too_long', status: 414, stored: 'no' },
  unsupportedMediaType: { code: 'unsupported_media_type', status: 415, stored: 'no' },
  unauthenticated: { code: 'unauthenticated', status: 401, stored: 'no' },
  forbidden: { code: 'forbidden', status: 403, stored: 'no' },
  notFound: { code: 'not_found', status: 404, stored: 'no' },
  unknownCollection: { code: 'unknown_collection', status: 404, stored: 'no' },
  methodNotAllowed: { code: 'method_not_allowed', status: 405, stored: 'no' },
  /** nginx: the client sent its headers or body too slowly. */
  requestTimeout: { code: 'request_timeout', status: 408, stored: 'no' },
  /** The Idempotency-Key was already used for a different body (compared key-order-insensitively). */
  conflict: { code: 'conflict', status: 409, stored: 'no' },
  rateLimited: { code: 'rate_limited', status: 429, stored: 'no' },
  /** A bug or an unreadable answer from the next tier: nobody can say what happened. */
  internal: { code: 'internal', status: 500, stored: 'unknown' },
  /**
   * core holds the record but cannot decrypt it: its ciphertext fails the integrity check
   * (tampered, or moved from another record) or its key is not in core's key file. Never
   * answered with other data in its place.
   */
  recordUnreadable: { code: 'record_unreadable', status: 500, stored: 'unknown' },
  /** The write reached a tier that lost track of it (a connection cut after sending). */
  outcomeUnknown: { code: 'outcome_unknown', status: 502, stored: 'unknown' },
  noTunnel: { code: 'no_tunnel', status: 503, stored: 'no' },
  queueFull: { code: 'queue_full', status: 503, stored: 'no' },
  /** The gateway's admission control: too many requests or bytes already pending. */
  overloaded: { code: 'overloaded', status: 503, stored: 'no' },
  /** The gateway is draining for shutdown and takes no new request. */
  shuttingDown: { code: 'shutting_down', status: 503, stored: 'no' },
  /** Storage could not be reached: the write was never attempted there. */
  unavailable: { code: 'unavailable', status: 503, stored: 'no' },
  storageFull: { code: 'storage_full', status: 507, stored: 'no' },
  /** The time budget ran out somewhere after the request was queued: it may still be stored. */
  deadline: { code: 'deadline_exceeded', status: 504, stored: 'unknown' },
} as const satisfies Record<string, { code: string; status: number; stored: Stored }>;

export type ErrorCodeName = keyof typeof ErrorCodes;

const storedByCode = new Map<string, Stored>(Object.values(ErrorCodes).map((e) => [e.code, e.stored]));

/** Whether a write answered with this code may have been stored; an unknown code may have. */
export function storedFor(code: string): Stored {
  return storedByCode.get(code) ?? 'unknown';
}
