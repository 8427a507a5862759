import { isDeepStrictEqual } from 'node:util';
import type { QueueRequest } from './dispatcher';

/**
 * Whether a retry under an id already in flight asks for the same thing: same method,
 * collection, record, list query and body, where the body is compared as JSON values (object key
 * order does not matter; a client library may re-serialise a retry differently). Pure.
 */
export function sameRequest(a: QueueRequest, b: QueueRequest): boolean {
  if (a.method !== b.method || a.collection !== b.collection || a.recordId !== b.recordId || a.key !== b.key || a.token !== b.token) return false;
  if (!isDeepStrictEqual(a.query, b.query)) return false;
  if (a.body === b.body) return true;
  if (a.body === undefined || b.body === undefined) return false;
  try {
    return isDeepStrictEqual(JSON.parse(a.body), JSON.parse(b.body));
  } catch {
    return false;
  }
}
