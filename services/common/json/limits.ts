import { ApiError } from '../errors/api-error';

export interface JsonLimits {
  /** Largest body, in UTF-8 bytes. */
  maxBytes: number;
  /** Deepest nesting of objects and arrays (a flat object is depth 1). */
  maxDepth: number;
  /** Most object keys in the whole document. */
  maxKeys: number;
  /** Longest string (key or value), in UTF-16 code units. */
  maxStringLength: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = {
  maxBytes: 1024 * 1024,
  maxDepth: 32,
  maxKeys: 10_000,
  maxStringLength: 65_536,
};

/**
 * Measures nesting depth of JSON text without parsing it, so a body of a million `[`
 * is refused in linear time before JSON.parse ever sees it. Brackets inside strings do
 * not count. Throws on excess; says nothing about well-formedness (JSON.parse does that).
 */
export function checkJsonDepth(text: string, maxDepth: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) throw new ApiError('tooDeep', `nesting deeper than ${maxDepth}`);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
  }
}

/** Why a key is refused, or undefined when it is acceptable. */
export function forbiddenKeyReason(key: string): string | undefined {
  if (key.startsWith('$')) return 'starts with $';
  if (key.includes('.')) return 'contains .';
  if (key.includes('\0')) return 'contains NUL';
  if (key === '__proto__' || key === 'constructor' || key === 'prototype') return 'is reserved';
  return undefined;
}

/**
 * Walks a parsed JSON value and enforces the limits that text checks cannot: key count,
 * string length, forbidden keys (operator and prototype keys), and well-formed Unicode
 * (a lone surrogate from a `\ud800` escape would be silently changed by the database).
 * Iterative, so hostile depth cannot overflow the stack (depth is capped anyway).
 */
export function inspectJsonValue(root: unknown, limits: JsonLimits): void {
  let keys = 0;
  const stack: { value: unknown; depth: number }[] = [{ value: root, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop()!;
    if (typeof value === 'string') {
      checkString(value, limits, 'value');
      continue;
    }
    // 1e400 parses to Infinity: no database stores it faithfully.
    if (typeof value === 'number' && !Number.isFinite(value)) throw new ApiError('schemaViolation', 'a number is out of range');
    if (value === null || typeof value !== 'object') continue;
    if (depth + 1 > limits.maxDepth) throw new ApiError('tooDeep', `nesting deeper than ${limits.maxDepth}`);
    if (Array.isArray(value)) {
      for (const item of value) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const key of Object.keys(value)) {
      if (++keys > limits.maxKeys) throw new ApiError('tooManyKeys', `more than ${limits.maxKeys} keys`);
      checkString(key, limits, 'key');
      const reason = forbiddenKeyReason(key);
      // The key itself is client data: the message says what is wrong, never echoes it.
      if (reason !== undefined) throw new ApiError('forbiddenKey', `a key ${reason}`);
      stack.push({ value: (value as Record<string, unknown>)[key], depth: depth + 1 });
    }
  }
}

function checkString(s: string, limits: JsonLimits, what: 'key' | 'value'): void {
  if (s.length > limits.maxStringLength) {
    throw new ApiError('stringTooLong', `a ${what} is longer than ${limits.maxStringLength} characters`);
  }
  if (!s.isWellFormed()) throw new ApiError('badEncoding', `a ${what} holds an unpaired UTF-16 surrogate`);
}

/**
 * Parses a JSON body under limits: bytes, depth (before parsing), then structure. The
 * result must be a plain object (a record), not an array or scalar.
 */
export function parseJsonRecord(text: string, limits: JsonLimits): Record<string, unknown> {
  if (Buffer.byteLength(text, 'utf8') > limits.maxBytes) {
    throw new ApiError('bodyTooLarge', `body larger than ${limits.maxBytes} bytes`);
  }
  checkJsonDepth(text, limits.maxDepth);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError('badJson', 'body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ApiError('notAnObject', 'body must be a JSON object');
  }
  inspectJsonValue(value, limits);
  return value as Record<string, unknown>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes bytes as strict UTF-8; invalid sequences are a client error, not U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ApiError('badEncoding', 'body is not valid UTF-8');
  }
}
