import { ErrorCodes, type ErrorCodeName } from '../errors/codes';
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
  if (e.type === 'entity.too.large') return shared('bodyTooLarge', 'body too large');
  if (e.status === 415) return shared('unsupportedMediaType', 'Content-Encoding is not accepted');
  if (typeof e.status === 'number' && Number.isInteger(e.status) && e.status >= 400 && e.status < 500) {
    // The library's own 4xx status stands; the code says only that the request was bad.
    return { ...shared('badRequest', 'malformed request'), status: e.status };
  }
  return shared('internal', 'internal error');
}

function shared(kind: ErrorCodeName, message: string): ClientErrorDescription {
  const { code, status } = ErrorCodes[kind];
  return { status, code, message };
}
