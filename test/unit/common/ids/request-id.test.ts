import assert from 'node:assert/strict';
import { idempotentRequestId, newRequestId } from '../../../../services/common/ids/request-id';
import { REQUEST_ID } from '../../../../services/common/ids/names';

describe('newRequestId', () => {
  it('gives canonical lowercase UUIDs that differ each time', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const id = newRequestId();
      assert.match(id, REQUEST_ID);
      ids.add(id);
    }
    assert.equal(ids.size, 100);
  });
});

describe('idempotentRequestId', () => {
  it('gives the same id for the same token, collection and key', () => {
    assert.equal(idempotentRequestId('tok', 'notes', 'k1'), idempotentRequestId('tok', 'notes', 'k1'));
  });

  it('gives a different id when the token, collection or key differs', () => {
    const base = idempotentRequestId('tok', 'notes', 'k1');
    assert.notEqual(idempotentRequestId('tok2', 'notes', 'k1'), base);
    assert.notEqual(idempotentRequestId('tok', 'notes2', 'k1'), base);
    assert.notEqual(idempotentRequestId('tok', 'notes', 'k2'), base);
  });

  it('keeps the fields apart, so shifting text between them changes the id', () => {
    assert.notEqual(idempotentRequestId('ab', 'c', 'k'), idempotentRequestId('a', 'bc', 'k'));
    assert.notEqual(idempotentRequestId('t', 'ab', 'c'), idempotentRequestId('t', 'a', 'bc'));
  });

  it('is a valid RFC 9562 version-8 UUID', () => {
    for (const key of ['a', 'b', 'c', 'retry-42', '']) {
      const id = idempotentRequestId('nst_0123456789abcdef_x', 'notes', key);
      assert.match(id, REQUEST_ID);
      assert.equal(id[14], '8', 'version nibble');
      assert.ok('89ab'.includes(id[19]!), `variant nibble of ${id}`);
    }
  });
});
