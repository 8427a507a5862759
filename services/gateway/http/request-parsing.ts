import { ApiError } from '../../common/errors/api-error';
import { isCollectionName, isRequestId, TOKEN_SHAPE } from '../../common/ids/names';

/**
 * Checks of the parts of an HTTP request the gateway reads before anything is queued.
 * Pure. The gateway cannot tell a good token from a bad one (only core can), but it can
 * refuse what is not even shaped like one.
 */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;

export function bearerToken(header: string | undefined): string {
  if (header === undefined) throw new ApiError('unauthenticated', 'missing Authorization: Bearer <token>');
  const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
  if (!m || !TOKEN_SHAPE.test(m[1]!)) throw new ApiError('unauthenticated', 'malformed bearer token');
  return m[1]!;
}

export function collectionParam(value: unknown): string {
  if (!isCollectionName(value)) throw new ApiError('badCollection', 'collection names are lowercase letters, digits and _ (start with a letter, at most 63)');
  return value;
}

export function recordIdParam(value: unknown): string {
  if (!isRequestId(value)) throw new ApiError('badRecordId', 'record ids are UUIDs');
  return value;
}

export function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) throw new ApiError('badRequest', 'Idempotency-Key must be 1-128 printable ASCII characters');
  return header;
}

/** JSON only, UTF-8 only: `application/json` with no charset or charset=utf-8. */
export function requireJsonContentType(header: string | undefined): void {
  if (header === undefined) throw new ApiError('unsupportedMediaType', 'Content-Type must be application/json');
  const [type, ...params] = header.split(';').map((p) => p.trim().toLowerCase());
  if (type !== 'application/json') throw new ApiError('unsupportedMediaType', 'Content-Type must be application/json');
  for (const p of params) {
    const [k, v] = p.split('=').map((s) => s?.trim().replace(/^"|"$/g, ''));
    if (k === 'charset' && v !== 'utf-8' && v !== 'utf8') throw new ApiError('unsupportedMediaType', 'only UTF-8 JSON is accepted');
  }
}
