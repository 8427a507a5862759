import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Connection } from 'ssh2';
import { NonstopError } from '../../common/errors/nonstop-error';

/**
 * One broker's reverse forward of its Redis port. Each queue connection the gateway makes
 * to that broker is one `forwarded-tcpip` channel on the broker's SSH connection, handed to
 * the Redis client as its stream (tunnel/channel-connector.ts).
 *
 * There is no loopback listener in between: it cost every queue message two more socket
 * hops in the gateway's event loop (app → listener → channel and back), and it was a port
 * any process in the gateway's network namespace could connect to.
 */
export class Tunnel extends EventEmitter<{ closed: [] }> {
  private readonly channels = new Set<Duplex>();
  private closed = false;

  constructor(
    readonly id: string,
    /** Which broker (its authorized key comment); the source address is on every line of the log. */
    readonly peer: { name: string },
    private readonly ssh: Connection,
    private readonly forward: { bindAddr: string; bindPort: number },
  ) {
    super();
  }

  /** A new channel to the broker's queue port; rejects when the tunnel is closed or the broker refuses. */
  openChannel(): Promise<Duplex> {
    if (this.closed) return Promise.reject(new TunnelClosedError(this.id));
    return new Promise((resolve, reject) => {
      // The originator address is informational in forwarded-tcpip; the broker ignores it.
      this.ssh.forwardOut(this.forward.bindAddr, this.forward.bindPort, '127.0.0.1', 0, (err, channel) => {
        if (err) return reject(err);
        if (this.closed) {
          channel.close();
          return reject(new TunnelClosedError(this.id));
        }
        this.channels.add(channel);
        channel.on('close', () => this.channels.delete(channel));
        resolve(channel);
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of this.channels) channel.destroy();
    this.emit('closed');
  }
}

/** A channel was asked of a tunnel that has closed (its broker went or was replaced). */
export class TunnelClosedError extends NonstopError {
  constructor(tunnelId: string) {
    super('tunnel_closed', `tunnel ${tunnelId} is closed`, 503);
  }
}
