/**
 * One text per JSON value, whatever order its object keys arrived in: keys sorted by
 * UTF-16 code units (as RFC 8785 does), at every depth; arrays keep their order; strings
 * and numbers as JSON.stringify writes them. Two bodies that parse to the same value give
 * the same text, so a retry re-serialised by another client library hashes the same and
 * is recognised as the same record instead of a conflict. Pure.
 *
 * Takes parsed JSON only (null, booleans, finite numbers, strings, arrays, plain objects);
 * anything else is a TypeError, not silently dropped as JSON.stringify would. Iterative,
 * so a deep value cannot overflow the stack.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  // Work items: a value still to write, or text to emit as it is. Pushed in reverse, so
  // popping writes them in order.
  const work: ({ value: unknown } | string)[] = [{ value }];
  while (work.length > 0) {
    const item = work.pop()!;
    if (typeof item === 'string') {
      out.push(item);
      continue;
    }
    const v = item.value;
    if (v === null || typeof v === 'boolean' || typeof v === 'string') {
      out.push(JSON.stringify(v));
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError('canonicalJson: a number is not finite');
      out.push(JSON.stringify(v));
    } else if (Array.isArray(v)) {
      work.push(']');
      for (let i = v.length - 1; i >= 0; i--) {
        work.push({ value: v[i] });
        if (i > 0) work.push(',');
      }
      work.push('[');
    } else if (typeof v === 'object' && isPlainObject(v)) {
      const record = v as Record<string, unknown>;
      const keys = Object.keys(record).sort();
      work.push('}');
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        work.push({ value: record[key] });
        work.push(`${JSON.stringify(key)}:`);
        if (i > 0) work.push(',');
      }
      work.push('{');
    } else {
      throw new TypeError(`canonicalJson: a ${typeof v === 'object' ? 'non-plain object' : typeof v} is not JSON`);
    }
  }
  return out.join('');
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}
