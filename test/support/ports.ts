import { createServer, type Server } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A block of `size` consecutive loopback ports that all accept, found at random (another
 * block is tried when one is taken): each connection's port is pushed to `sink` as it
 * arrives, so a knock's SYNs show up there in order. The caller closes `servers`.
 */
export async function listenOnPortBlock(size: number, sink: number[]): Promise<{ base: number; servers: Server[] }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const opened: Server[] = [];
    try {
      for (let p = base; p < base + size; p++) {
        const srv = createServer((sock) => {
          sink.push(p);
          sock.destroy();
        });
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(p, '127.0.0.1', () => resolve());
        });
        opened.push(srv);
      }
      return { base, servers: opened };
    } catch {
      for (const srv of opened) srv.close();
    }
  }
  throw new Error('no free block of ports');
}
