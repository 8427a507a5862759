/**
 * Redis key and channel names of queue protocol v1. Everything a gateway may touch lives
 * under its own prefix, which is what the broker's Redis ACL grants it and nothing more.
 */
export const PROTOCOL_VERSION = 1;
const ROOT = 'nonstop:v1';

export const queueKeys = {
  /** Stream the gateway appends requests to. */
  requests: (gatewayId: string): string => `${ROOT}:gw:${gatewayId}:req`,
  /** Per-request reply (a string with a TTL), read once by the gateway with GETDEL. */
  reply: (gatewayId: string, requestId: string): string => `${ROOT}:gw:${gatewayId}:reply:${requestId}`,
  replyPattern: (gatewayId: string): string => `${ROOT}:gw:${gatewayId}:reply:*`,
  /** Channel on which the broker announces "reply for request X is ready". */
  replies: (gatewayId: string): string => `${ROOT}:gw:${gatewayId}:replies`,
  /** Poison messages, with the reason; broker-only. */
  deadLetter: `${ROOT}:dead`,
  /** The consumer group every broker worker joins. */
  group: 'brokers',
  /** Field of a stream entry that holds the envelope. */
  field: 'e',
} as const;
