import assert from 'node:assert/strict';
import { DataKeyFileError, firstDataKeySet, formatDataKeyFile, parseDataKeyFile } from '../../../../services/common/pki/data-key-file';

const key = (byte: number, length = 32): string => Buffer.alloc(length, byte).toString('base64');

describe('data key file: the key-encryption keys core reads', () => {
  it('reads back what it writes: the active id and every key', () => {
    const set = firstDataKeySet(new Date('2025-06-01T00:00:00Z'));
    assert.match(set.active, /^20250601-[0-9a-f]{8}$/);
    const again = parseDataKeyFile(formatDataKeyFile(set));
    assert.equal(again.active, set.active);
    assert.deepEqual(again.keys, set.keys);
  });

  it('refuses, without echoing key bytes, a file that is not JSON, has unknown fields, a bad id, a short key or an active key it lacks', () => {
    const cases: [string, RegExp][] = [
      ['not json', /not JSON/],
      [JSON.stringify({ active: 'a', keys: { a: key(1) }, extra: 1 }), /expected/],
      [JSON.stringify({ active: 'bad id', keys: { 'bad id': key(1) } }), /expected/],
      [JSON.stringify({ active: 'a', keys: { a: key(7, 16) } }), /key a is 16 bytes, expected 32/],
      [JSON.stringify({ active: 'b', keys: { a: key(1) } }), /the active key b is not among the keys/],
      [JSON.stringify({ active: 'a', keys: { a: 'not base64!' } }), /expected/],
    ];
    for (const [text, why] of cases) {
      assert.throws(() => parseDataKeyFile(text), (err: unknown) => err instanceof DataKeyFileError && why.test(err.message) && !err.message.includes(key(7, 16)), text);
    }
  });
});
