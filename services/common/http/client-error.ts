import { isNonstopError } from '../errors/nonstop-error';

export interface ClientErrorDescription {
  status: number;
  code: string;
  message: string;
}

/**
 * What an error thrown inside an express app becomes for the client: our own errors as
 * they are; body-parser's (size, content encoding) and the router's (an undecodable path)
 * 4xx as JSON codes; anything else a 500 that reveals nothing.
 */
export function describeClientError(err: unknown): ClientErrorDescription {
  if (isNonstopError(err)) return { status: err.status, code: err.code, message: err.message };
  const e = (typeof err === 'object' && err !== null ? err : {}) as { type?: unknown; status?: unknown };
  if (e.type === 'entity.too.large') return { status: 413, code: 'body_too_large', message: 'body too large' };
  if (e.status === 415) return { status: 415, code: 'unsupported_media_type', message: 'Content-Encoding is not accepted' };
  if (typeof e.status === 'number' && Number.isInteger(e.status) && e.status >= 400 && e.status < 500) {
    return { status: e.status, code: 'bad_request', message: 'malformed request' };
  }
  return { status: 500, code: 'internal', message: 'internal error' };
}
