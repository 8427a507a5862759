import { ErrorCodes, storedFor, type ErrorCodeName, type Stored } from './codes';
import { NonstopError } from './nonstop-error';

/** An error meant for the client: its code and status come from the shared table. */
export class ApiError extends NonstopError {
  constructor(kind: ErrorCodeName, message: string, options?: { cause?: unknown }) {
    const { code, status } = ErrorCodes[kind];
    super(code, message, status, options);
  }
}

/** The JSON body every tier uses for errors. */
export interface ErrorBody {
  error: { code: string; message: string; stored: Stored };
}

/** `stored` comes from the code's row in the table, so no tier can say it differently. */
export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message, stored: storedFor(code) } };
}

/** The body for one of the shared codes, named by its key in the table. */
export function apiErrorBody(kind: ErrorCodeName, message: string): ErrorBody {
  return errorBody(ErrorCodes[kind].code, message);
}
