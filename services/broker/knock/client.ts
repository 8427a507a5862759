import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Sends a knock: one TCP SYN to each port, in order, as knockd's `knock` client does.
 * The gateway never answers a knock port (nftables drops it), so each socket is abandoned
 * once its SYN is on the wire — closing a socket still in SYN-SENT sends nothing, and no
 * retransmission can disturb the next step. `gapMs` between steps keeps them in order.
 */
export async function sendKnock(address: string, ports: readonly number[], gapMs: number): Promise<void> {
  for (const port of ports) {
    const socket = connect({ host: address, port });
    socket.on('error', () => undefined);
    // The connect(2) call (and so the SYN) happens on the next tick for a literal address.
    await sleep(Math.max(1, gapMs));
    socket.destroy();
  }
}
