/**
 * Error codes that cross a tier boundary (client responses, queue replies, the JSON bodies
 * nginx sends for its own errors). Stable: clients and dashboards key on them. Each maps to
 * one HTTP status. Code that sends one names it here, never as a string literal.
 */
export const ErrorCodes = {
  badJson: { code: 'bad_json', status: 400 },
  badEncoding: { code: 'bad_encoding', status: 400 },
  badRequest: { code: 'bad_request', status: 400 },
  badCollection: { code: 'bad_collection', status: 400 },
  badRecordId: { code: 'bad_record_id', status: 400 },
  /** nginx: the request headers exceeded its buffers (its own status 494, sent as 400). */
  headersTooLarge: { code: 'headers_too_large', status: 400 },
  forbiddenKey: { code: 'forbidden_key', status: 422 },
  tooDeep: { code: 'too_deep', status: 422 },
  tooManyKeys: { code: 'too_many_keys', status: 422 },
  stringTooLong: { code: 'string_too_long', status: 422 },
  schemaViolation: { code: 'schema_violation', status: 422 },
  notAnObject: { code: 'not_an_object', status: 422 },
  bodyTooLarge: { code: 'body_too_large', status: 413 },
  uriTooLong: { code: 'uri_too_long', status: 414 },
  unsupportedMediaType: { code: 'unsupported_media_type', status: 415 },
  unauthenticated: { code: 'unauthenticated', status: 401 },
  forbidden: { code: 'forbidden', status: 403 },
  notFound: { code: 'not_found', status: 404 },
  unknownCollection: { code: 'unknown_collection', status: 404 },
  methodNotAllowed: { code: 'method_not_allowed', status: 405 },
  /** nginx: the client sent its headers or body too slowly. */
  requestTimeout: { code: 'request_timeout', status: 408 },
  conflict: { code: 'conflict', status: 409 },
  rateLimited: { code: 'rate_limited', status: 429 },
  internal: { code: 'internal', status: 500 },
  noTunnel: { code: 'no_tunnel', status: 503 },
  queueFull: { code: 'queue_full', status: 503 },
  unavailable: { code: 'unavailable', status: 503 },
  storageFull: { code: 'storage_full', status: 507 },
  deadline: { code: 'deadline_exceeded', status: 504 },
} as const;

export type ErrorCodeName = keyof typeof ErrorCodes;
