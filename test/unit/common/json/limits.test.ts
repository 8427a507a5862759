import assert from 'node:assert/strict';
import { ApiError } from '../../../../services/common/errors/api-error';
import {
  checkJsonDepth,
  decodeUtf8,
  DEFAULT_JSON_LIMITS,
  forbiddenKeyReason,
  inspectJsonValue,
  parseJsonRecord,
  type JsonLimits,
} from '../../../../services/common/json/limits';

/** Asserts `fn` throws an ApiError with this code and status. */
function throwsApi(fn: () => unknown, code: string, status: number): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    return err;
  }
  assert.fail(`expected ApiError ${code}`);
}

const limits: JsonLimits = { maxBytes: 4096, maxDepth: 4, maxKeys: 10, maxStringLength: 16 };

describe('checkJsonDepth', () => {
  it('passes nesting exactly at the limit and refuses one more level', () => {
    checkJsonDepth('[[[[]]]]', 4);
    checkJsonDepth('{"a":{"b":[{"c":1}]}}', 4);
    throwsApi(() => checkJsonDepth('[[[[[]]]]]', 4), 'too_deep', 422);
    throwsApi(() => checkJsonDepth('{"a":{"b":[{"c":[1]}]}}', 4), 'too_deep', 422);
  });

  it('counts siblings as the same depth, not as deeper', () => {
    checkJsonDepth('[[1],[2],[3],[4],[5],[6]]', 2);
  });

  it('ignores brackets inside strings', () => {
    checkJsonDepth('{"k":"[[[[[[[[{{{{{{"}', 1);
    checkJsonDepth('{"[[[[[":"]]]]"}', 1);
  });

  it('ignores escaped quotes, so brackets after them still count as inside the string', () => {
    checkJsonDepth('{"k":"a\\"[[[[[[\\"b"}', 1);
    // An escaped backslash closes the escape: the quote after it ends the string.
    throwsApi(() => checkJsonDepth('{"k":"a\\\\",[[[1]]]}', 2), 'too_deep', 422);
  });

  it('refuses a million opening brackets', () => {
    throwsApi(() => checkJsonDepth('['.repeat(1_000_000), DEFAULT_JSON_LIMITS.maxDepth), 'too_deep', 422);
  });
});

describe('forbiddenKeyReason', () => {
  it('accepts ordinary keys', () => {
    for (const key of ['title', 'a_b', 'x-y', 'ünïcode', '', 'a$', 'proto', '__proto', 'Constructor']) assert.equal(forbiddenKeyReason(key), undefined, key);
  });

  it('gives a reason for operator, dotted, NUL and prototype keys', () => {
    assert.equal(forbiddenKeyReason('$gt'), 'starts with $');
    assert.equal(forbiddenKeyReason('$'), 'starts with $');
    assert.equal(forbiddenKeyReason('a.b'), 'contains .');
    assert.equal(forbiddenKeyReason('a\0b'), 'contains NUL');
    for (const key of ['__proto__', 'constructor', 'prototype']) assert.equal(forbiddenKeyReason(key), 'is reserved', key);
  });
});

describe('inspectJsonValue', () => {
  it('accepts a value within every limit', () => {
    inspectJsonValue(JSON.parse('{"a":1,"b":[{"c":"x"}],"d":{"e":null}}'), limits);
  });

  it('counts keys across nested objects and arrays', () => {
    const ten = { a: 1, b: { c: 1, d: 1 }, e: [{ f: 1, g: 1 }, { h: 1 }], i: 1, j: 1 };
    inspectJsonValue(ten, limits);
    throwsApi(() => inspectJsonValue({ ...ten, k: 1 }, limits), 'too_many_keys', 422);
    throwsApi(() => inspectJsonValue({ ...ten, b: { c: 1, d: 1, x: 1 } }, limits), 'too_many_keys', 422);
  });

  it('limits the length of values and of keys', () => {
    inspectJsonValue({ k: 'x'.repeat(16) }, limits);
    throwsApi(() => inspectJsonValue({ k: 'x'.repeat(17) }, limits), 'string_too_long', 422);
    throwsApi(() => inspectJsonValue({ ['k'.repeat(17)]: 1 }, limits), 'string_too_long', 422);
    throwsApi(() => inspectJsonValue({ a: [['x'.repeat(17)]] }, limits), 'string_too_long', 422);
    throwsApi(() => inspectJsonValue('x'.repeat(17), limits), 'string_too_long', 422);
  });

  it('refuses $-prefixed keys at any depth, inside arrays too', () => {
    for (const text of ['{"$where":"1"}', '{"a":{"$gt":1}}', '{"a":[1,{"$ne":null}]}', '[{"b":[{"$in":[]}]}]']) {
      const err = throwsApi(() => inspectJsonValue(JSON.parse(text), limits), 'forbidden_key', 422);
      assert.match(err.message, /starts with \$/);
    }
  });

  it('refuses keys with a dot or a NUL', () => {
    throwsApi(() => inspectJsonValue(JSON.parse('{"a":{"b.c":1}}'), limits), 'forbidden_key', 422);
    throwsApi(() => inspectJsonValue(JSON.parse('{"a\\u0000b":1}'), limits), 'forbidden_key', 422);
  });

  it('refuses __proto__, constructor and prototype keys as JSON.parse creates them', () => {
    const proto = JSON.parse('{"__proto__":{"x":1}}') as object;
    assert.ok(Object.hasOwn(proto, '__proto__'), 'JSON.parse makes __proto__ an own property');
    throwsApi(() => inspectJsonValue(proto, limits), 'forbidden_key', 422);
    throwsApi(() => inspectJsonValue(JSON.parse('{"a":[{"constructor":{"prototype":1}}]}'), limits), 'forbidden_key', 422);
    throwsApi(() => inspectJsonValue(JSON.parse('{"prototype":1}'), limits), 'forbidden_key', 422);
  });

  it('refuses lone surrogates in values and in keys, accepts proper pairs', () => {
    inspectJsonValue(JSON.parse('{"k":"\\ud83d\\ude00"}'), limits);
    throwsApi(() => inspectJsonValue(JSON.parse('{"k":"\\ud800"}'), limits), 'bad_encoding', 400);
    throwsApi(() => inspectJsonValue(JSON.parse('{"k":"a\\udc00b"}'), limits), 'bad_encoding', 400);
    throwsApi(() => inspectJsonValue(JSON.parse('{"\\ud800":1}'), limits), 'bad_encoding', 400);
    throwsApi(() => inspectJsonValue(JSON.parse('{"k":["\\ude00\\ud83d"]}'), limits), 'bad_encoding', 400);
  });

  it('refuses depth beyond the limit even when given an already parsed value', () => {
    inspectJsonValue({ a: { b: { c: [1] } } }, limits);
    throwsApi(() => inspectJsonValue({ a: { b: { c: [[1]] } } }, limits), 'too_deep', 422);
  });

  it('does not touch the prototype of Object', () => {
    try {
      inspectJsonValue(JSON.parse('{"__proto__":{"polluted":1}}'), limits);
    } catch {
      // refused, as it should be
    }
    assert.equal((({}) as Record<string, unknown>).polluted, undefined);
  });
});

describe('parseJsonRecord', () => {
  it('returns the parsed object', () => {
    assert.deepEqual(parseJsonRecord('{"title":"x","n":[1,2]}', limits), { title: 'x', n: [1, 2] });
  });

  it('counts the byte limit in UTF-8 bytes, not characters', () => {
    const small: JsonLimits = { ...limits, maxBytes: 12, maxStringLength: 100 };
    // {"k":"éé"} is 10 characters and 12 bytes; one more é is 11 characters and 14 bytes.
    assert.deepEqual(parseJsonRecord('{"k":"éé"}', small), { k: 'éé' });
    throwsApi(() => parseJsonRecord('{"k":"ééé"}', small), 'body_too_large', 413);
    // Four-byte characters: 😀 is two UTF-16 units but four bytes.
    throwsApi(() => parseJsonRecord('{"k":"😀😀"}', { ...small, maxBytes: 13 }), 'body_too_large', 413);
  });

  it('refuses roots that are not objects', () => {
    for (const text of ['[]', '[{"a":1}]', '"text"', '42', 'null', 'true']) throwsApi(() => parseJsonRecord(text, limits), 'not_an_object', 422);
  });

  it('refuses invalid JSON', () => {
    for (const text of ['', '{', '{"a":1,}', "{'a':1}", '{"a":1} x', 'NaN', '{"a":undefined}']) throwsApi(() => parseJsonRecord(text, limits), 'bad_json', 400);
  });

  it('checks depth before parsing', () => {
    throwsApi(() => parseJsonRecord('['.repeat(1_000_000), DEFAULT_JSON_LIMITS), 'too_deep', 422);
    throwsApi(() => parseJsonRecord('{"a":{"b":{"c":{"d":{}}}}}', limits), 'too_deep', 422);
  });

  it('applies the structural checks to the parsed record', () => {
    throwsApi(() => parseJsonRecord('{"title":"x","meta":{"$gt":1}}', limits), 'forbidden_key', 422);
    throwsApi(() => parseJsonRecord('{"__proto__":{"x":1}}', limits), 'forbidden_key', 422);
    throwsApi(() => parseJsonRecord('{"k":"\\ud800"}', limits), 'bad_encoding', 400);
  });
});

describe('decodeUtf8', () => {
  it('decodes valid UTF-8', () => {
    assert.equal(decodeUtf8(Buffer.from('{"k":"é😀"}', 'utf8')), '{"k":"é😀"}');
  });

  it('refuses invalid sequences instead of substituting U+FFFD', () => {
    const bad = [
      [0xff],
      [0x80],
      [0xc3], // truncated two-byte sequence
      [0xe2, 0x82], // truncated three-byte sequence
      [0xed, 0xa0, 0x80], // encoded surrogate U+D800
      [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
    ];
    for (const bytes of bad) throwsApi(() => decodeUtf8(Uint8Array.from(bytes)), 'bad_encoding', 400);
  });

  it('refuses overlong encodings', () => {
    for (const bytes of [
      [0xc0, 0xaf], // '/' in two bytes
      [0xc1, 0xbf],
      [0xe0, 0x80, 0xaf], // '/' in three bytes
      [0xf0, 0x80, 0x80, 0xaf], // '/' in four bytes
      [0xc0, 0x80], // NUL in two bytes
    ]) {
      throwsApi(() => decodeUtf8(Uint8Array.from(bytes)), 'bad_encoding', 400);
    }
  });

  it('drops a leading byte order mark', () => {
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}')]);
    assert.equal(decodeUtf8(withBom), '{"a":1}');
  });

  it('keeps decoding correctly after a failure', () => {
    throwsApi(() => decodeUtf8(Uint8Array.from([0xe2, 0x82])), 'bad_encoding', 400);
    assert.equal(decodeUtf8(Buffer.from('ok€')), 'ok€');
  });
});
