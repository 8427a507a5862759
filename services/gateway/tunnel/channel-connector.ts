import { PassThrough, type Duplex } from 'node:stream';
import { AbstractConnector } from 'ioredis';
import type { Tunnel } from './tunnel';

/** What ioredis's connector contract calls a stream (a net.Socket or tls.TLSSocket). */
type NetStream = Awaited<ReturnType<AbstractConnector['connect']>>;

/**
 * An ioredis connector whose stream is an SSH channel of the broker's tunnel, so the Redis
 * protocol goes straight into the channel with no loopback socket in between.
 *
 * ioredis treats its stream as a socket: it sets Nagle and keep-alive on it and, while
 * `connecting` is true, a connect timeout. A channel is already open when it is handed over
 * (`connecting` stays undefined, so ioredis takes it as connected), and the socket options
 * belong to the SSH connection under it, which the gateway sets once (TCP_NODELAY,
 * keep-alive): here they are no-ops.
 */
export function channelConnector(tunnel: Tunnel): new (options: unknown) => AbstractConnector {
  return class ChannelConnector extends AbstractConnector {
    /** ioredis passes its whole options object, defaults filled in (disconnectTimeout 2000 ms). */
    constructor(options: unknown) {
      super((options as { disconnectTimeout: number }).disconnectTimeout);
    }

    async connect(): Promise<NetStream> {
      this.connecting = true;
      let channel: Duplex;
      try {
        channel = await tunnel.openChannel();
      } catch (err) {
        // As a refused TCP connect looks to ioredis: a stream already destroyed, its error
        // kept as firstError, so ioredis reports it and reconnects on its retry strategy. A
        // rejection here would instead end the client for good (status "end").
        this.firstError = err as Error;
        const refused = new PassThrough();
        refused.destroy();
        return asSocket(refused);
      }
      // ioredis's disconnect() during the channel's opening: nothing will read it.
      if (!this.connecting) {
        channel.destroy();
        throw new Error('queue connection closed while its channel opened');
      }
      this.stream = asSocket(channel);
      return this.stream;
    }
  };
}

function asSocket(channel: Duplex): NetStream {
  // A socket's 'close' always comes from I/O, after the callbacks its 'connect' started.
  // A channel's can come sooner (ssh2 emits it when the read side ends, on a tick), and
  // ioredis marks a connection ready in a promise callback without checking it is still the
  // one that connected: a channel closing in between left ioredis "ready" on a dead channel,
  // refusing to reconnect ("Redis is already connecting/connected"), until the process
  // restarted (the faults test's crash loop of the broker's redis-server did this). So the
  // channel's 'close' reaches ioredis on the next turn of the event loop, as a socket's would.
  const emit = channel.emit.bind(channel);
  channel.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event !== 'close') return emit(event, ...args);
    setImmediate(() => emit(event, ...args));
    return true;
  }) as typeof channel.emit;
  const socketLike = Object.assign(channel, {
    setNoDelay: () => socketLike,
    setKeepAlive: () => socketLike,
    setTimeout: () => socketLike,
  });
  return socketLike as unknown as NetStream;
}
