/**
 * Names that travel between tiers and end up in Redis keys, URLs and database documents.
 * Each is checked against an allow-list pattern wherever it enters a tier.
 */
export const GATEWAY_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** A broker's name: its client certificate's CN, its authorized_keys comment, a line of core's known-broker list. */
export const BROKER_NAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/;
/** Collection names: lowercase, start with a letter; no `$`, `.`, or `system.` prefix possible. */
const COLLECTION_NAME = /^[a-z][a-z0-9_]{0,62}$/;
/** Request ids (and record ids, which are request ids): a UUID in canonical lowercase form. */
export const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * What a bearer token may look like before anyone looks it up (RFC 6750 token68, bounded).
 * Only core can tell a valid token; every tier refuses what is not even shaped like one.
 */
export const TOKEN_SHAPE = /^[A-Za-z0-9._~+/-]{8,512}=*$/;

export function isCollectionName(value: unknown): value is string {
  return typeof value === 'string' && COLLECTION_NAME.test(value);
}
export function isRequestId(value: unknown): value is string {
  return typeof value === 'string' && REQUEST_ID.test(value);
}
