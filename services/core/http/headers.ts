import { ApiError } from '../../common/errors/api-error';
import { MAX_REQUEST_BUDGET_MS } from '../config';

/** Decimal digits only: no sign, exponent, fraction or list ("5, 6" from a repeated header). */
const BUDGET = /^[0-9]{1,6}$/;
/** As the gateway accepts it from clients: 1-128 printable ASCII characters, no spaces. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;

/**
 * `x-request-budget-ms`: the milliseconds the caller still grants this request, 1 to
 * 600000. Absent, core's own default applies; anything else is a 400, never a guess.
 */
export function requestBudgetMs(header: string | undefined, defaultMs: number): number {
  if (header === undefined) return defaultMs;
  const ms = BUDGET.test(header) ? Number(header) : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_REQUEST_BUDGET_MS)) throw new ApiError('badRequest', `X-Request-Budget-Ms must be an integer from 1 to ${MAX_REQUEST_BUDGET_MS}`);
  return ms;
}

/** `idempotency-key`, forwarded by the broker only when the client sent one. */
export function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) throw new ApiError('badRequest', 'Idempotency-Key must be 1-128 printable ASCII characters');
  return header;
}
