import { EventEmitter, once } from 'node:events';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Tunnel } from '../../services/gateway/tunnel/tunnel';

/**
 * What the Dispatcher and Lane use of a Tunnel (an id, the peer, channels, 'closed'), with
 * each channel a plain TCP connection to a local port: the test's redis-server, or a proxy
 * in front of it that the test can freeze.
 */
export class StandInTunnel extends EventEmitter<{ closed: [] }> {
  readonly peer = { name: 'broker-test', address: '127.0.0.1' };
  constructor(
    readonly id: string,
    readonly port: number,
  ) {
    super();
  }

  async openChannel(): Promise<Duplex> {
    const socket = connect(this.port, '127.0.0.1');
    socket.setNoDelay(true);
    await once(socket, 'connect');
    return socket;
  }

  get tunnel(): Tunnel {
    return this as unknown as Tunnel;
  }
}
