/**
 * Every error the services raise on purpose. Callers branch on `code` (stable, part of the
 * public contract: it reaches clients in `{"error": {"code": ...}}`), never on message text.
 */
export class NonstopError extends Error {
  readonly code: string;
  /** HTTP status this error maps to when it reaches a client. */
  readonly status: number;

  constructor(code: string, message: string, status = 500, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

export function isNonstopError(value: unknown): value is NonstopError {
  return value instanceof NonstopError;
}
