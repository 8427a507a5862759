import assert from 'node:assert/strict';
import { GATEWAY_ID, isCollectionName, isRequestId } from '../../../../services/common/ids/names';

describe('name patterns', () => {
  it('accepts gateway ids of lowercase letters, digits and dashes, up to 32 characters', () => {
    // The pattern is what config schemas and the queue envelope check gateway ids with.
    for (const id of ['gw', 'gw-1', '0', 'a'.repeat(32)]) assert.ok(GATEWAY_ID.test(id), id);
    for (const id of ['', '-gw', 'GW', 'gw_1', 'gw:1', 'gw.1', 'a'.repeat(33), 'gw\n']) assert.ok(!GATEWAY_ID.test(id), id);
  });

  it('accepts collection names that cannot become operators or system collections', () => {
    for (const name of ['notes', 'a', 'a_1', 'a'.repeat(63)]) assert.ok(isCollectionName(name), name);
    for (const name of ['', '1notes', '_notes', 'Notes', 'system.users', '$cmd', 'a.b', 'a-b', 'a'.repeat(64), 'notes\n', null]) {
      assert.ok(!isCollectionName(name), String(name));
    }
  });

  it('accepts only canonical lowercase UUIDs as request ids', () => {
    assert.ok(isRequestId('0f8fad5b-d9cb-469f-a165-70867728950e'));
    for (const id of ['0F8FAD5B-D9CB-469F-A165-70867728950E', '0f8fad5bd9cb469fa16570867728950e', '{0f8fad5b-d9cb-469f-a165-70867728950e}', '0f8fad5b-d9cb-469f-a165-70867728950e\n', '']) {
      assert.ok(!isRequestId(id), id);
    }
  });
});
