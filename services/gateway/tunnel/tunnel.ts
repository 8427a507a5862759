import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Connection } from 'ssh2';
import type { Logger } from '../../common/log/logger';

/**
 * One broker's reverse forward of its Redis port. The gateway binds a loopback listener on
 * an ephemeral port for it (so any number of brokers can each forward "the queue port"
 * without colliding) and carries each accepted socket to the broker in a
 * `forwarded-tcpip` channel. Nothing but the gateway app connects to that listener.
 */
export class Tunnel extends EventEmitter<{ closed: [] }> {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private closed = false;
  localPort = 0;

  constructor(
    readonly id: string,
    /** Which broker (its authorized key comment); the source address is on every line of `log`. */
    readonly peer: { name: string },
    private readonly ssh: Connection,
    private readonly forward: { bindAddr: string; bindPort: number },
    private readonly log: Logger,
  ) {
    super();
  }

  async open(): Promise<void> {
    const server = createServer((socket) => this.carry(socket));
    server.on('error', (err) => this.log.warn('tunnel listener error', { tunnel: this.id, err: err.message }));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    const addr = server.address();
    this.localPort = typeof addr === 'object' && addr ? addr.port : 0;
  }

  private carry(socket: Socket): void {
    if (this.closed) return void socket.destroy();
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pause();
    this.ssh.forwardOut(this.forward.bindAddr, this.forward.bindPort, socket.remoteAddress ?? '127.0.0.1', socket.remotePort ?? 0, (err, channel) => {
      if (err) {
        this.log.warn('broker refused forwarded channel', { tunnel: this.id, err: err.message });
        socket.destroy();
        return;
      }
      channel.on('error', () => socket.destroy());
      channel.on('close', () => socket.destroy());
      socket.on('close', () => channel.close());
      socket.pipe(channel).pipe(socket);
      socket.resume();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server?.close();
    for (const s of this.sockets) s.destroy();
    this.emit('closed');
  }
}
