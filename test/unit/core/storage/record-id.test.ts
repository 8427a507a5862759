import assert from 'node:assert/strict';
import { isRequestId } from '../../../../services/common/ids/names';
import { keyedRecordId } from '../../../../services/core/storage/record-id';

describe('keyedRecordId', () => {
  it('is a version-8 UUID in the canonical form record ids take', () => {
    const id = keyedRecordId('billing-app', 'notes', 'order-42');
    assert.ok(isRequestId(id), id);
    assert.equal(id[14], '8');
    assert.ok('89ab'.includes(id[19]!), id);
  });

  it('gives the same id for the same client, collection and key', () => {
    assert.equal(keyedRecordId('billing-app', 'notes', 'order-42'), keyedRecordId('billing-app', 'notes', 'order-42'));
  });

  it('gives different ids when the client, the collection or the key differ', () => {
    const ids = new Set([
      keyedRecordId('billing-app', 'notes', 'order-42'),
      keyedRecordId('other-app', 'notes', 'order-42'),
      keyedRecordId('billing-app', 'orders', 'order-42'),
      keyedRecordId('billing-app', 'notes', 'order-43'),
      // Shifting text between fields changes the id: the separator keeps them apart.
      keyedRecordId('billing-appn', 'otes', 'order-42'),
    ]);
    assert.equal(ids.size, 5);
  });
});
