import assert from 'node:assert/strict';
import { ApiError } from '../../../../services/common/errors/api-error';
import { describeClientError } from '../../../../services/common/http/client-error';

describe('describeClientError', () => {
  it('passes our own errors through with their code and status', () => {
    assert.deepEqual(describeClientError(new ApiError('forbidden', 'no')), { status: 403, code: 'forbidden', message: 'no' });
  });

  it("maps body-parser's and the router's client errors to JSON codes", () => {
    assert.equal(describeClientError({ type: 'entity.too.large', status: 413 }).code, 'body_too_large');
    assert.deepEqual(describeClientError({ type: 'encoding.unsupported', status: 415 }), { status: 415, code: 'unsupported_media_type', message: 'Content-Encoding is not accepted' });
    assert.deepEqual(describeClientError(Object.assign(new URIError('bad'), { status: 400 })), { status: 400, code: 'bad_request', message: 'malformed request' });
    // Another library 4xx keeps its own status; only the code is the generic one.
    assert.deepEqual(describeClientError({ status: 404 }), { status: 404, code: 'bad_request', message: 'malformed request' });
  });

  it('answers anything else with a 500 that says nothing about it', () => {
    for (const err of [new Error('secret detail'), { status: 503 }, { status: 400.5 }, 'x', undefined]) {
      assert.deepEqual(describeClientError(err), { status: 500, code: 'internal', message: 'internal error' });
    }
  });
});
