/**
 * Redis key and channel names of queue protocol v2. Everything a gateway may touch lives
 * under its own prefix, which is what the broker's Redis ACL grants it and nothing more.
 * v2 replaced v1's stored replies (SET, PUBLISH of the id, GETDEL) with the reply itself
 * published once: one tunnel trip instead of one and a half, and no memory needed to
 * answer, so a Redis at maxmemory still drains.
 */
export const PROTOCOL_VERSION = 2;
const ROOT = 'nonstop:v2';

export const queueKeys = {
  /** Stream the gateway appends requests to. */
  requests: (gatewayId: string): string => `${ROOT}:gw:${gatewayId}:req`,
  /** Channel on which the broker publishes each reply (the whole reply envelope). */
  replies: (gatewayId: string): string => `${ROOT}:gw:${gatewayId}:replies`,
  /** Poison messages, with the reason; broker-only. */
  deadLetter: `${ROOT}:dead`,
  /** The consumer group every broker worker joins. */
  group: 'brokers',
  /** Field of a stream entry that holds the envelope. */
  field: 'e',
} as const;

/** Milliseconds part of a stream entry id (`<ms>-<seq>`): when the broker's Redis added it. */
export function entryTimeMs(entryId: string): number {
  const dash = entryId.indexOf('-');
  return Number(dash === -1 ? entryId : entryId.slice(0, dash));
}
