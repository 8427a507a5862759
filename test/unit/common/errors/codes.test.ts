import assert from 'node:assert/strict';
import { errorBody } from '../../../../services/common/errors/api-error';
import { ErrorCodes, storedFor } from '../../../../services/common/errors/codes';

describe('error codes: what a client may conclude about its write', () => {
  it('says every 4xx and every refusal before the write was attempted is not stored', () => {
    for (const e of Object.values(ErrorCodes)) if (e.status < 500) assert.equal(e.stored, 'no', e.code);
    for (const code of ['no_tunnel', 'queue_full', 'overloaded', 'shutting_down', 'unavailable', 'storage_full']) assert.equal(storedFor(code), 'no', code);
  });

  it('says a write may have been stored after a deadline, a lost connection or an internal error', () => {
    for (const code of ['deadline_exceeded', 'outcome_unknown', 'internal']) assert.equal(storedFor(code), 'unknown', code);
  });

  it('gives every code one row, and an unknown code the cautious answer', () => {
    const codes = Object.values(ErrorCodes).map((e) => e.code);
    assert.equal(new Set(codes).size, codes.length);
    assert.equal(storedFor('something_new'), 'unknown');
  });

  it('puts the row of the code into every error body', () => {
    assert.deepEqual(errorBody('queue_full', 'full'), { error: { code: 'queue_full', message: 'full', stored: 'no' } });
    assert.deepEqual(errorBody('deadline_exceeded', 'late'), { error: { code: 'deadline_exceeded', message: 'late', stored: 'unknown' } });
  });
});
