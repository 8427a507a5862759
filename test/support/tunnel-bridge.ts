import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { Tunnel } from '../../services/gateway/tunnel/tunnel';

const bridges = new WeakMap<Tunnel, Promise<number>>();

/**
 * A loopback port whose every connection becomes one channel of `tunnel`, so tests can
 * poke a broker's Redis through it with plain sockets (a refused channel closes the socket).
 * The gateway itself hands channels to its Redis client directly; this bridge is test-only.
 * One port per tunnel, closed with it.
 */
export function loopbackPortOf(tunnel: Tunnel): Promise<number> {
  let port = bridges.get(tunnel);
  if (port === undefined) {
    port = bridge(tunnel);
    bridges.set(tunnel, port);
  }
  return port;
}

async function bridge(tunnel: Tunnel): Promise<number> {
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.pause();
    tunnel.openChannel().then(
      (channel) => {
        channel.on('error', () => socket.destroy());
        channel.on('close', () => socket.destroy());
        socket.on('close', () => channel.destroy());
        socket.pipe(channel).pipe(socket);
        socket.resume();
      },
      () => socket.destroy(),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tunnel.once('closed', () => server.close());
  const addr = server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('bridge listener has no port');
  return addr.port;
}
