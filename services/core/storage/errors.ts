import { MongoError, MongoErrorLabel, MongoNetworkError, MongoNotConnectedError, MongoServerError, MongoServerSelectionError, MongoTopologyClosedError, MongoWriteConcernError } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { isDeadlineExceeded } from './deadline';

/** How far a failed database operation got, as the driver's error types tell it. */
export type FailureStage =
  /** The request's budget ran out (our abort signal, or the server's maxTimeMS). */
  | 'deadline'
  /** Never handed to the server: no server selected, no connection to write it on. */
  | 'notSent'
  /** The server answered with an error: the operation did not take effect. */
  | 'refused'
  /** The server answered that its storage is full: nothing was written. */
  | 'storageFull'
  /** Written to a connection, then the connection failed: it may have taken effect. */
  | 'unknown';

/**
 * Driver errors raised only while checking a connection out of the pool, before anything
 * is written. The driver does not export these classes; `name` is their stable identity
 * (PoolClearedOnNetworkError, which interrupts commands already sent, has its own name).
 */
const CHECKOUT_ERROR_NAMES = new Set(['MongoPoolClosedError', 'MongoPoolClearedError', 'MongoWaitQueueTimeoutError']);

/** MongoDB's MaxTimeMSExpired: the server gave up on the command at its maxTimeMS. */
const MAX_TIME_MS_EXPIRED = 50;
/** MongoDB's OutOfDiskSpace. */
const OUT_OF_DISK_SPACE = 14031;
/**
 * FerretDB passes SQLite's SQLITE_FULL on as a generic InternalError: its text is the only
 * mark it has, so here alone a message is read.
 */
const DISK_FULL_TEXT = /disk is full|No space left|OutOfDiskSpace/i;

export function failureStage(err: unknown): FailureStage {
  if (isDeadlineExceeded(err)) return 'deadline';
  if (err instanceof MongoServerSelectionError || err instanceof MongoTopologyClosedError || err instanceof MongoNotConnectedError) return 'notSent';
  if (err instanceof MongoError && CHECKOUT_ERROR_NAMES.has(err.name)) return 'notSent';
  // Establishing a new connection failed: in its hello or authentication (the driver
  // labels those), or at TCP connect, refused. The command was still waiting for it.
  if (err instanceof MongoError && err.hasErrorLabel(MongoErrorLabel.HandshakeError)) return 'notSent';
  if (err instanceof MongoNetworkError) return systemErrorCode(err.cause) === 'ECONNREFUSED' ? 'notSent' : 'unknown';
  // A write concern error comes with a write that was applied but not confirmed durable.
  if (err instanceof MongoWriteConcernError) return 'unknown';
  if (err instanceof MongoServerError) {
    if (err.code === MAX_TIME_MS_EXPIRED) return 'deadline';
    if (err.code === OUT_OF_DISK_SPACE || DISK_FULL_TEXT.test(err.message)) return 'storageFull';
    return 'refused';
  }
  return 'unknown';
}

/**
 * A failed read whose answer decides the outcome of a write already made: the insert
 * found its id taken, and the record under it could not be read to tell a replay from a
 * conflict. That record exists and may be this one.
 */
export function comparisonFailure(err: unknown): Error {
  if (!isStorageError(err)) return asError(err);
  if (failureStage(err) === 'deadline') return new ApiError('deadline', 'the request ran out of time comparing with the stored record; it may be this one', { cause: err });
  return new ApiError('outcomeUnknown', 'a record with this id is stored and could not be compared; it may be this one', { cause: err });
}

/**
 * Only the driver's errors and a budget running out are storage failures; our own errors
 * (a 409, a 422) pass through as they are, and anything else is a bug that must surface
 * as one (500 `internal`, which says the outcome is unknown).
 */
function isStorageError(err: unknown): boolean {
  return err instanceof MongoError || isDeadlineExceeded(err);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function systemErrorCode(cause: unknown): unknown {
  return typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
}

/**
 * A failed read (the token lookup, a record read) as the client should see it. Nothing was
 * being written, and a token lookup comes before the insert, so whatever happened the
 * record was not stored: 503 `unavailable`, except a budget that ran out, which answers
 * 504 `deadline_exceeded` as every tier does.
 */
export function readFailure(err: unknown): Error {
  if (!isStorageError(err)) return asError(err);
  if (failureStage(err) === 'deadline') return new ApiError('deadline', 'the request ran out of time waiting for storage', { cause: err });
  return new ApiError('unavailable', 'storage is unavailable; nothing was stored', { cause: err });
}

/**
 * A failed insert as the client should see it: `stored: no` only when the driver's error
 * says the command never reached the database or the database refused it; a connection
 * that failed after the command was sent is 502 `outcome_unknown`; a budget that ran out is
 * 504 `deadline_exceeded` (the database may still have the command, and a stalled engine
 * commits what it had received when it resumes).
 */
export function writeFailure(err: unknown): Error {
  if (!isStorageError(err)) return asError(err);
  switch (failureStage(err)) {
    case 'deadline':
      return new ApiError('deadline', 'the request ran out of time in storage; the record may have been stored', { cause: err });
    case 'notSent':
      return new ApiError('unavailable', 'storage could not be reached; nothing was stored', { cause: err });
    case 'refused':
      return new ApiError('unavailable', 'storage refused the write; nothing was stored', { cause: err });
    case 'storageFull':
      return new ApiError('storageFull', 'storage is full; nothing was stored', { cause: err });
    case 'unknown':
      return new ApiError('outcomeUnknown', 'the connection to storage failed after the write was sent; the record may have been stored', { cause: err });
  }
}

/**
 * A failed erase as the client should see it. The DELETE is idempotent: whatever happened,
 * sending it again converges, so only the code differs: 503 when the database was never
 * reached or refused it (not erased), 504/502 when it may have been.
 */
export function eraseFailure(err: unknown): Error {
  if (!isStorageError(err)) return asError(err);
  switch (failureStage(err)) {
    case 'deadline':
      return new ApiError('deadline', 'the request ran out of time in storage; the record may or may not be erased: retry the DELETE', { cause: err });
    case 'notSent':
    case 'refused':
      return new ApiError('unavailable', 'storage could not be reached or refused the erase; nothing was erased', { cause: err });
    case 'storageFull':
      return new ApiError('storageFull', 'storage is full; nothing was erased', { cause: err });
    case 'unknown':
      return new ApiError('outcomeUnknown', 'the connection to storage failed after the erase was sent; retry the DELETE', { cause: err });
  }
}
