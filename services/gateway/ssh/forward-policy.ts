/**
 * What a broker may ask of the gateway's SSH server: exactly one reverse forward
 * (`tcpip-forward`) of the configured Redis port on the gateway's loopback. Pure.
 */
export interface ForwardRequest {
  bindAddr: string;
  bindPort: number;
}

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost']);

export function forwardRefusal(req: ForwardRequest, redisPort: number, alreadyForwarding: boolean): string | undefined {
  if (alreadyForwarding) return 'one forward per connection';
  if (!LOOPBACK_NAMES.has(req.bindAddr)) return `bind address ${JSON.stringify(req.bindAddr)} is not loopback`;
  if (req.bindPort !== redisPort) return `port ${req.bindPort} is not the queue port`;
  return undefined;
}
