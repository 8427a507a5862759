import assert from 'node:assert/strict';
import { canonicalJson } from '../../../../services/common/json/canonical';

describe('canonicalJson', () => {
  it('writes the same text for objects whose keys arrived in different orders, at every depth', () => {
    const a = JSON.parse('{"b":1,"a":{"y":[{"q":1,"p":2}],"x":null},"c":"s"}') as unknown;
    const b = JSON.parse('{"c":"s","a":{"x":null,"y":[{"p":2,"q":1}]},"b":1}') as unknown;
    assert.equal(canonicalJson(a), '{"a":{"x":null,"y":[{"p":2,"q":1}]},"b":1,"c":"s"}');
    assert.equal(canonicalJson(b), canonicalJson(a));
  });

  it('keeps array order: arrays in another order are another value', () => {
    assert.equal(canonicalJson([3, 1, 2]), '[3,1,2]');
    assert.notEqual(canonicalJson({ t: [1, 2] }), canonicalJson({ t: [2, 1] }));
  });

  it('sorts by UTF-16 code units, so integer-like keys are not put first as JavaScript objects order them', () => {
    // Object.keys gives "2","10","b","B" order for integer-like keys; the canonical form
    // must not depend on that engine rule.
    const value = JSON.parse('{"b":1,"10":2,"B":3,"2":4,"é":5,"a":6}') as unknown;
    assert.equal(canonicalJson(value), '{"10":2,"2":4,"B":3,"a":6,"b":1,"é":5}');
  });

  it('writes scalars as JSON.stringify does, escapes included', () => {
    assert.equal(canonicalJson(null), 'null');
    assert.equal(canonicalJson(true), 'true');
    assert.equal(canonicalJson(0.1), '0.1');
    assert.equal(canonicalJson(1e21), '1e+21');
    assert.equal(canonicalJson(-0), '0');
    assert.equal(canonicalJson('quote " and \n and \u2028'), JSON.stringify('quote " and \n and \u2028'));
    assert.equal(canonicalJson({ 'k"\\': 'v' }), '{"k\\"\\\\":"v"}');
  });

  it('writes empty containers and keeps a __proto__ key as data', () => {
    assert.equal(canonicalJson({}), '{}');
    assert.equal(canonicalJson([]), '[]');
    assert.equal(canonicalJson({ a: {}, b: [] }), '{"a":{},"b":[]}');
    const parsed = JSON.parse('{"__proto__":{"x":1},"a":0}') as unknown;
    assert.equal(canonicalJson(parsed), '{"__proto__":{"x":1},"a":0}');
  });

  it('round-trips: parsing the canonical text gives an equal value', () => {
    const value = { z: [1, { b: 'x', a: [true, null] }], a: { nested: { deeper: 1.5 } } };
    assert.deepEqual(JSON.parse(canonicalJson(value)), value);
  });

  it('handles nesting deeper than a recursive writer could', () => {
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const text = canonicalJson(deep);
    assert.equal(text.length, 200_001);
    assert.ok(text.startsWith('[[[') && text.endsWith(']]]'));
  });

  it('refuses values that are not JSON instead of dropping them', () => {
    for (const bad of [undefined, () => 1, 1n, Symbol('s'), Number.NaN, Number.POSITIVE_INFINITY, new Date(0), { a: undefined }, [new Map()]]) {
      assert.throws(() => canonicalJson(bad), TypeError, String(typeof bad));
    }
  });
});
