import { ReplyError } from 'ioredis';

// ioredis re-exports redis-errors' class untyped.
const ReplyErrorClass = ReplyError as abstract new (...args: never[]) => Error;

/**
 * The error code of a Redis error reply: its first word (`OOM`, `NOGROUP`, `BUSYGROUP`,
 * `NOPERM`, ...), which is how the Redis protocol types its errors. Undefined for anything
 * that is not an error reply (a timeout, a closed connection), whose outcome is unknown.
 */
export function redisErrorCode(err: unknown): string | undefined {
  if (!(err instanceof ReplyErrorClass)) return undefined;
  const space = err.message.indexOf(' ');
  return space === -1 ? err.message : err.message.slice(0, space);
}
