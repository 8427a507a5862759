import type { Stack } from './stack';
import type { ServiceSpec } from './compose-config';
import { waitFor } from '../wait';

/** The loopback port on which the impersonator bridges sockets into the broker's tunnel. */
export const IMPERSONATOR_QUEUE_PORT = 6390;

/**
 * What someone who owns the gateway's host can do with what is on it: run their own SSH
 * server on the gateway's address with the gateway's host key, let the broker connect and
 * open its reverse tunnel, and open channels in it to the broker's Redis. The gateway itself
 * keeps no socket to its tunnels that another process could use (its Redis client speaks
 * into the channels), so owning the host, not a port, is the attacker this models.
 *
 * The script runs in the gateway's image (its ssh2) with the gateway's files; every socket
 * accepted on 127.0.0.1:IMPERSONATOR_QUEUE_PORT becomes one channel to the broker's queue
 * port. It accepts any public key: the broker, not it, is the one checking identities.
 */
const SCRIPT = `
const fs = require('fs');
const net = require('net');
const { Server } = require('/app/node_modules/ssh2');
let forward;
net.createServer((sock) => {
  sock.on('error', () => sock.destroy());
  if (!forward) return sock.destroy();
  sock.pause();
  forward.client.forwardOut(forward.bindAddr, forward.bindPort, '127.0.0.1', 0, (err, ch) => {
    if (err) return sock.destroy();
    ch.on('error', () => sock.destroy());
    ch.on('close', () => sock.destroy());
    sock.on('close', () => ch.destroy());
    sock.pipe(ch).pipe(sock);
    sock.resume();
  });
}).listen(${IMPERSONATOR_QUEUE_PORT}, '127.0.0.1');
new Server({ hostKeys: [fs.readFileSync(process.env.SSH_HOST_KEY_FILE)] }, (client) => {
  client.on('error', () => {});
  client.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
  client.on('request', (accept, reject, name, info) => {
    if (name !== 'tcpip-forward') return reject && reject();
    forward = { client, bindAddr: info.bindAddr, bindPort: info.bindPort };
    if (accept) accept();
    console.log('impersonator: the broker opened its tunnel');
  });
  client.on('close', () => { if (forward && forward.client === client) forward = undefined; });
}).listen(Number(process.env.SSH_PORT), '0.0.0.0', () => console.log('impersonator: listening'));
`;

/**
 * Replaces the stack's gateway with the impersonator (same name, address, volumes and
 * environment) and waits until the broker has opened its tunnel to it. Returns the
 * gateway's own spec, for `restoreGateway`.
 */
export async function impersonateGateway(stack: Stack): Promise<ServiceSpec> {
  let original: ServiceSpec | undefined;
  await stack.replace('gateway', (s) => {
    original = s;
    const probe = `require('net').connect(${IMPERSONATOR_QUEUE_PORT}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`;
    return { ...s, command: ['node', '-e', SCRIPT], healthcheck: ['CMD', 'node', '-e', probe] };
  });
  await waitFor('the broker to open its tunnel to the impersonator', async () => (await stack.logs('gateway')).includes('impersonator: the broker opened its tunnel'), 120_000, 500);
  return original!;
}

/** Puts the gateway back as it was. */
export async function restoreGateway(stack: Stack, original: ServiceSpec): Promise<void> {
  await stack.replace('gateway', () => original);
}
