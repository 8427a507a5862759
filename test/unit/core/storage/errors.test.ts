import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { MongoError, MongoErrorLabel, MongoNetworkError, MongoNetworkTimeoutError, MongoServerError, MongoServerSelectionError, MongoTopologyClosedError, MongoWriteConcernError } from 'mongodb';
import { ApiError } from '../../../../services/common/errors/api-error';
import { storedFor } from '../../../../services/common/errors/codes';
import { DeadlineExceeded } from '../../../../services/core/storage/deadline';
import { comparisonFailure, failureStage, readFailure, writeFailure } from '../../../../services/core/storage/errors';

// The pool's errors are not exported by the driver's entry point; these are the classes
// it throws, from the module that defines them.
const cmap = createRequire(__filename)('mongodb/lib/cmap/errors') as Record<'PoolClosedError' | 'PoolClearedError' | 'PoolClearedOnNetworkError' | 'WaitQueueTimeoutError', new (arg: unknown, address?: string) => MongoError>;
const pool = { address: '127.0.0.1:27017' };

function refused(): MongoNetworkError {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:27017'), { code: 'ECONNREFUSED' });
  return new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:27017', { cause });
}

function handshakeFailed(): MongoNetworkError {
  const err = new MongoNetworkTimeoutError('timed out during hello');
  err.addErrorLabel(MongoErrorLabel.HandshakeError);
  return err;
}

function reset(): MongoNetworkError {
  const cause = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  return new MongoNetworkError('read ECONNRESET', { cause });
}

const notSent: [string, () => unknown][] = [
  ['server selection timed out', () => new MongoServerSelectionError('Server selection timed out after 5000 ms', { error: undefined } as never)],
  ['the client was closed', () => new MongoTopologyClosedError()],
  ['the pool was closed', () => new cmap.PoolClosedError(pool)],
  ['the pool was cleared before checkout', () => new cmap.PoolClearedError(pool)],
  ['the wait for a pooled connection timed out', () => new cmap.WaitQueueTimeoutError('Timed out while checking out a connection from connection pool', pool.address)],
  ['a new connection was refused', refused],
  ['a new connection failed its handshake', handshakeFailed],
];

const maybeSent: [string, () => unknown][] = [
  ['the connection was reset', reset],
  ['the connection closed', () => new MongoNetworkError('connection 3 to 127.0.0.1:27017 closed')],
  ['the socket timed out after the handshake', () => new MongoNetworkTimeoutError('connection timed out')],
  ['the pool interrupted commands in flight', () => new cmap.PoolClearedOnNetworkError(pool)],
  ['the server reported a write concern error', () => new MongoWriteConcernError({ ok: 1, writeConcernError: { code: 64, errmsg: 'waiting for replication timed out' } })],
];

describe('storage failure classification', () => {
  for (const [what, make] of notSent) {
    it(`says an insert was not sent when ${what}: 503 unavailable, stored no`, () => {
      assert.equal(failureStage(make()), 'notSent');
      const err = writeFailure(make());
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 503);
      assert.equal(err.code, 'unavailable');
      assert.equal(storedFor(err.code), 'no');
    });
  }

  for (const [what, make] of maybeSent) {
    it(`says an insert's outcome is unknown when ${what}: 502 outcome_unknown`, () => {
      assert.equal(failureStage(make()), 'unknown');
      const err = writeFailure(make());
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 502);
      assert.equal(err.code, 'outcome_unknown');
      assert.equal(storedFor(err.code), 'unknown');
    });
  }

  it('answers 504 deadline_exceeded, stored unknown, for the request budget and for the server giving up at maxTimeMS', () => {
    for (const cause of [new DeadlineExceeded(300), new MongoServerError({ ok: 0, code: 50, errmsg: 'operation exceeded time limit' })]) {
      const err = writeFailure(cause);
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 504);
      assert.equal(err.code, 'deadline_exceeded');
      assert.equal(storedFor(err.code), 'unknown');
    }
  });

  it('says a write the server answered with an error was not stored', () => {
    const err = writeFailure(new MongoServerError({ ok: 0, code: 10107, errmsg: 'not primary' }));
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'unavailable');
  });

  it('answers 507 storage_full to a full disk, by MongoDB code or FerretDB text', () => {
    for (const cause of [new MongoServerError({ ok: 0, code: 14031, errmsg: 'out of disk space' }), new MongoServerError({ ok: 0, code: 1, errmsg: 'sqlite: database or disk is full (13)' })]) {
      const err = writeFailure(cause);
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'storage_full');
    }
    // The text counts only in the server's own answer, not in a network error.
    assert.equal(failureStage(new MongoNetworkError('disk is full')), 'unknown');
  });

  it('passes our own errors and bugs through unclassified', () => {
    const conflict = new ApiError('conflict', 'x');
    assert.equal(writeFailure(conflict), conflict);
    assert.equal(readFailure(conflict), conflict);
    const bug = new TypeError('undefined is not a function');
    assert.equal(writeFailure(bug), bug);
    assert.equal(readFailure(bug), bug);
  });

  it('answers any failed read with 503 unavailable, and a budget that ran out with 504', () => {
    for (const make of [...notSent, ...maybeSent].map(([, m]) => m)) {
      const err = readFailure(make());
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'unavailable');
    }
    const late = readFailure(new DeadlineExceeded(300));
    assert.ok(late instanceof ApiError);
    assert.equal(late.code, 'deadline_exceeded');
  });

  it('never says stored no when the record under a taken id could not be compared', () => {
    for (const make of [...notSent, ...maybeSent].map(([, m]) => m)) {
      const err = comparisonFailure(make());
      assert.ok(err instanceof ApiError);
      assert.equal(storedFor(err.code), 'unknown', err.code);
    }
    const late = comparisonFailure(new DeadlineExceeded(300));
    assert.ok(late instanceof ApiError);
    assert.equal(late.code, 'deadline_exceeded');
  });
});
