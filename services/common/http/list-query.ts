import { ApiError } from '../errors/api-error';

/**
 * The query of `GET /v1/records/{collection}` (list), as every tier checks it: the gateway
 * from the client's URL, the broker from the envelope, core from the broker's URL. Only
 * these four parameters, each at most once, each a string of a fixed shape; nothing here
 * ever becomes an object, so nothing a client sends can reach a database filter as an
 * operator. Errors name the parameter and the rule, never echo the value. Pure.
 */
export interface ListQuery {
  /** 1..LIST_LIMIT_MAX; LIST_LIMIT_DEFAULT when absent. */
  limit?: number;
  /** Opaque to every tier but core (core/storage/list-cursor.ts); base64url. */
  cursor?: string;
  /** RFC 3339 with a time zone; inclusive. */
  createdFrom?: string;
  /** RFC 3339 with a time zone; exclusive. */
  createdTo?: string;
}

export const LIST_LIMIT_DEFAULT = 20;
export const LIST_LIMIT_MAX = 100;
export const LIST_CURSOR_MAX_CHARS = 512;

const PARAMS = ['limit', 'cursor', 'createdFrom', 'createdTo'] as const;
type Param = (typeof PARAMS)[number];

/** Decimal digits, no sign, no leading zero, no exponent: "1" to "999" before the range check. */
const LIMIT = /^[1-9][0-9]{0,2}$/;
const CURSOR = new RegExp(`^[A-Za-z0-9_-]{1,${LIST_CURSOR_MAX_CHARS}}$`);
/** RFC 3339 date-time (section 5.6): a zone is required, "T"/"Z" in either case, fractions of any length up to 9 digits. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function badQuery(message: string): ApiError {
  return new ApiError('badQuery', message);
}

function isParam(name: string): name is Param {
  return (PARAMS as readonly string[]).includes(name);
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}

/**
 * Milliseconds since the epoch of an RFC 3339 timestamp, rounded up to the millisecond (the
 * precision records are stored with): a record stored at millisecond t is at or after the
 * instant exactly when t >= this. Refuses what is not a real instant (February 30th, hour
 * 24, a leap second JavaScript cannot represent) instead of letting Date roll it over.
 */
export function timestampMs(text: string, name = 'timestamp'): number {
  const m = RFC3339.exec(text);
  if (!m) throw badQuery(`${name} must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-28T10:00:00Z`);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const fraction = m[7] ?? '';
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) throw badQuery(`${name} is not a valid date and time`);
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const [oh, om] = [Number(m[10]), Number(m[11])];
    if (oh > 23 || om > 59) throw badQuery(`${name} has an invalid time zone offset`);
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const ms = Number(fraction.padEnd(3, '0').slice(0, 3));
  const roundUp = /[1-9]/.test(fraction.slice(3)) ? 1 : 0;
  // Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
  const base = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, ms));
  base.setUTCFullYear(year);
  return base.getTime() - offsetMinutes * 60_000 + roundUp;
}

/**
 * A query object, as the broker and core receive it from the tier before: only the four
 * keys, each of its own type and shape. Returns a fresh object holding only those.
 */
export function checkListQuery(query: unknown): ListQuery {
  if (query === undefined) return {};
  if (typeof query !== 'object' || query === null || Array.isArray(query) || Object.getPrototypeOf(query) !== Object.prototype) throw badQuery('the query must be a plain object');
  const out: ListQuery = {};
  for (const [name, value] of Object.entries(query)) {
    if (!isParam(name)) throw badQuery('unknown query parameter');
    if (value === undefined) continue;
    if (name === 'limit') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > LIST_LIMIT_MAX) throw badQuery(`limit must be an integer from 1 to ${LIST_LIMIT_MAX}`);
      out.limit = value;
      continue;
    }
    if (typeof value !== 'string') throw badQuery(`${name} must be a string`);
    if (name === 'cursor') {
      if (!CURSOR.test(value)) throw badQuery(`cursor must be base64url text of at most ${LIST_CURSOR_MAX_CHARS} characters`);
      out.cursor = value;
    } else {
      timestampMs(value, name);
      out[name] = value;
    }
  }
  return out;
}

/**
 * The query string of a list URL (the part after "?", or the whole URL: the part before
 * "?" is ignored). Unknown parameters, one given twice, and bracketed names
 * (`createdFrom[$ne]=x`, which some parsers turn into objects) are refused.
 */
export function parseListQuery(url: string): ListQuery {
  const at = url.indexOf('?');
  const search = at === -1 ? '' : url.slice(at + 1);
  const params = new URLSearchParams(search);
  const seen = new Set<string>();
  const raw: Record<string, string | number> = {};
  for (const [name, value] of params) {
    if (!isParam(name)) throw badQuery('unknown query parameter (limit, cursor, createdFrom, createdTo)');
    if (seen.has(name)) throw badQuery(`${name} is given more than once`);
    seen.add(name);
    if (name === 'limit') {
      if (!LIMIT.test(value)) throw badQuery(`limit must be an integer from 1 to ${LIST_LIMIT_MAX}`);
      raw.limit = Number(value);
    } else {
      raw[name] = value;
    }
  }
  return checkListQuery(raw);
}

/** The query string (with its "?", or "" for none) that carries `query`, in a fixed order. */
export function listQueryString(query: ListQuery): string {
  const params = new URLSearchParams();
  for (const name of PARAMS) {
    const value = query[name];
    if (value !== undefined) params.append(name, String(value));
  }
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}
