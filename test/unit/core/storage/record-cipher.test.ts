import assert from 'node:assert/strict';
import { ApiError } from '../../../../services/common/errors/api-error';
import { firstDataKeySet, newDataKey } from '../../../../services/common/pki/data-key-file';
import { DataKeyRing } from '../../../../services/core/storage/data-keys';
import { openRecord, rewrapRecord, sealRecord, type Sealed } from '../../../../services/core/storage/record-cipher';

const isUnreadable = (err: unknown): boolean => err instanceof ApiError && err.status === 500 && err.code === 'record_unreadable';

describe('record cipher: envelope encryption of a record bound to its id and collection', () => {
  const keys = DataKeyRing.of(firstDataKeySet());
  const a = { id: '0190a5a4-7c1e-7b3e-9d2a-1c2b3c4d5e6f', collection: 'notes' };
  const b = { id: '0190a5a4-7c1e-7b3e-9d2a-aaaaaaaaaaaa', collection: 'notes' };
  const text = '{"secret":"attack at dawn","n":1}';

  it('opens what it sealed, with a fresh data key and nonce each time', () => {
    const one = sealRecord(keys, a, text);
    const two = sealRecord(keys, a, text);
    assert.equal(openRecord(keys, a, one), text);
    assert.equal(one.keyId, keys.active().id);
    assert.notDeepEqual(one.ciphertext, two.ciphertext);
    assert.notDeepEqual(one.wrappedKey, two.wrappedKey);
    assert.ok(!one.ciphertext.toString('latin1').includes('attack'));
  });

  it('refuses every single flipped bit of the ciphertext, tag, nonce and wrapped key', () => {
    const sealed = sealRecord(keys, a, text);
    for (const field of ['ciphertext', 'tag', 'nonce', 'wrappedKey'] as const) {
      for (let i = 0; i < sealed[field].length; i++) {
        const bytes = Buffer.from(sealed[field]);
        bytes[i]! ^= 0x80;
        assert.throws(() => openRecord(keys, a, { ...sealed, [field]: bytes }), isUnreadable, `${field}[${i}]`);
      }
    }
  });

  it("refuses one record's sealed content, or only its ciphertext, opened as another record's or in another collection", () => {
    const sa = sealRecord(keys, a, text);
    const sb = sealRecord(keys, b, '{"other":true}');
    assert.throws(() => openRecord(keys, b, sa), isUnreadable);
    assert.throws(() => openRecord(keys, { ...a, collection: 'orders' }, sa), isUnreadable);
    const spliced: Sealed = { ...sb, nonce: sa.nonce, ciphertext: sa.ciphertext, tag: sa.tag };
    assert.throws(() => openRecord(keys, b, spliced), isUnreadable);
  });

  it('refuses a record whose key id is not in the key set, or is relabelled as another key', () => {
    const sealed = sealRecord(keys, a, text);
    assert.throws(() => openRecord(keys, a, { ...sealed, keyId: 'gone' }), isUnreadable);
    const other = newDataKey();
    const both = DataKeyRing.of({ active: keys.active().id, keys: new Map([[keys.active().id, keys.active().key], [other.id, other.key]]) });
    assert.throws(() => openRecord(both, a, { ...sealed, keyId: other.id }), isUnreadable);
  });

  it('rewraps only the data key: the content ciphertext stays, and the old key is no longer needed', () => {
    const sealed = sealRecord(keys, a, text);
    const next = newDataKey();
    const both = DataKeyRing.of({ active: next.id, keys: new Map([[keys.active().id, keys.active().key], [next.id, next.key]]) });
    const rewrapped = { ...sealed, ...rewrapRecord(both, a, sealed) };
    assert.equal(rewrapped.keyId, next.id);
    assert.deepEqual(rewrapped.ciphertext, sealed.ciphertext);
    const onlyNew = DataKeyRing.of({ active: next.id, keys: new Map([[next.id, next.key]]) });
    assert.equal(openRecord(onlyNew, a, rewrapped), text);
    assert.throws(() => openRecord(onlyNew, a, sealed), isUnreadable);
  });
});
