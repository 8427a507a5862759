/**
 * Every error a client of the public API can receive, as the OpenAPI document states it:
 * the code, the HTTP status it comes with, what its `stored` field says, and what it means
 * for the client. Written out here rather than derived, so the document can say what each
 * code means; test/unit/tools/openapi.test.ts checks this table against its sources — the
 * codes table (services/common/errors/codes.ts), the JSON errors nginx's rendered config
 * returns, and the few tiers that send a code with another status — and fails when a code
 * is added there without a line here, or a line here has no source.
 */
import type { Stored } from '../../services/common/errors/codes';

export interface DocumentedError {
  code: string;
  status: number;
  stored: Stored;
  meaning: string;
}

export const DOCUMENTED_ERRORS: readonly DocumentedError[] = [
  { code: 'bad_json', status: 400, stored: 'no', meaning: 'the body is missing or is not JSON' },
  { code: 'bad_encoding', status: 400, stored: 'no', meaning: 'the body is not UTF-8, or a string holds an unpaired surrogate' },
  { code: 'bad_request', status: 400, stored: 'no', meaning: 'the request is malformed (HTTP framing, or an Idempotency-Key that is not 1-128 printable ASCII characters)' },
  { code: 'bad_collection', status: 400, stored: 'no', meaning: 'the collection name is not lowercase letters, digits and _ starting with a letter (at most 63)' },
  { code: 'bad_record_id', status: 400, stored: 'no', meaning: 'the record id is not a lowercase UUID' },
  { code: 'bad_query', status: 400, stored: 'no', meaning: 'a list query parameter is malformed, out of range, unknown or given twice' },
  { code: 'bad_cursor', status: 400, stored: 'no', meaning: 'the cursor is malformed, tampered with, or was issued for another collection or other filters' },
  { code: 'headers_too_large', status: 400, stored: 'no', meaning: 'the request headers exceed the gateway’s buffers' },
  { code: 'unauthenticated', status: 401, stored: 'no', meaning: 'no bearer token, a malformed one, or one core does not know (or has revoked)' },
  { code: 'forbidden', status: 403, stored: 'no', meaning: 'the token is not granted this collection or this operation’s scope' },
  { code: 'not_found', status: 404, stored: 'no', meaning: 'no such record in this collection, or no such endpoint' },
  { code: 'unknown_collection', status: 404, stored: 'no', meaning: 'the deployment has no schema for this collection' },
  { code: 'method_not_allowed', status: 405, stored: 'no', meaning: 'the path does not take this method (the Allow header lists those it takes)' },
  { code: 'request_timeout', status: 408, stored: 'no', meaning: 'the headers or the body arrived too slowly' },
  { code: 'conflict', status: 409, stored: 'no', meaning: 'the Idempotency-Key was already used with a different body' },
  { code: 'body_too_large', status: 413, stored: 'no', meaning: 'the body is larger than the gateway accepts (MAX_BODY_BYTES)' },
  { code: 'uri_too_long', status: 414, stored: 'no', meaning: 'the request line is longer than the gateway’s buffers' },
  { code: 'unsupported_media_type', status: 415, stored: 'no', meaning: 'Content-Type is not application/json in UTF-8, or a Content-Encoding was sent' },
  { code: 'forbidden_key', status: 422, stored: 'no', meaning: 'a key starts with $, contains a dot or NUL, or is __proto__, constructor or prototype' },
  { code: 'too_deep', status: 422, stored: 'no', meaning: 'objects and arrays are nested too deep' },
  { code: 'too_many_keys', status: 422, stored: 'no', meaning: 'the body has too many keys' },
  { code: 'string_too_long', status: 422, stored: 'no', meaning: 'a key or string is too long' },
  { code: 'schema_violation', status: 422, stored: 'no', meaning: 'the record does not match the collection’s JSON Schema (the message names the rule)' },
  { code: 'not_an_object', status: 422, stored: 'no', meaning: 'the body is JSON but not an object' },
  { code: 'rate_limited', status: 429, stored: 'no', meaning: 'too many requests or connections from this address' },
  { code: 'internal', status: 500, stored: 'unknown', meaning: 'a tier failed unexpectedly: nobody can say whether a write was stored' },
  { code: 'record_unreadable', status: 500, stored: 'unknown', meaning: 'core holds the record but cannot decrypt it (tampered with, or its key is gone); never answered with other data' },
  { code: 'internal', status: 502, stored: 'unknown', meaning: 'the broker could not read core’s answer' },
  { code: 'outcome_unknown', status: 502, stored: 'unknown', meaning: 'the connection to storage failed after the write was sent: it may be stored' },
  { code: 'unavailable', status: 502, stored: 'no', meaning: 'the gateway’s own app, or core’s connection, failed before the request was handled' },
  { code: 'no_tunnel', status: 503, stored: 'no', meaning: 'no broker is connected to this gateway' },
  { code: 'queue_full', status: 503, stored: 'no', meaning: 'the gateway’s queue is full' },
  { code: 'overloaded', status: 503, stored: 'no', meaning: 'the gateway holds too many pending requests or body bytes (Retry-After says when to retry)' },
  { code: 'shutting_down', status: 503, stored: 'no', meaning: 'the gateway is draining for shutdown; retry on another' },
  { code: 'unavailable', status: 503, stored: 'no', meaning: 'storage could not be reached: nothing was attempted there' },
  { code: 'deadline_exceeded', status: 504, stored: 'unknown', meaning: 'the time budget ran out after the request was queued: it may still be stored' },
  { code: 'storage_full', status: 507, stored: 'no', meaning: 'core’s storage is full: nothing was written' },
];
