import { request } from 'node:https';
import { performance } from 'node:perf_hooks';

/**
 * How far the gateway's clock is ahead of ours, read from the `Date` header of its public
 * HTTPS endpoint (what htpdate does). Time-based knocks are drawn for the gateway's time
 * window; a broker whose own clock is off by more than a window would otherwise never get
 * in. The header has one-second resolution and is taken at the midpoint of the round trip,
 * so the estimate is within about a second plus half the round trip.
 *
 * The certificate is not verified: only the time is read, and whoever could forge it could
 * as well drop the knock's packets — a wrong offset costs a failed knock, nothing more.
 * Undefined when the endpoint does not answer with a usable Date within `timeoutMs`.
 */
export function gatewayClockOffset(host: string, port: number, timeoutMs: number, localNow: () => number = Date.now): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sentAt = performance.now();
    const sentWall = localNow();
    const req = request({ host, port, method: 'HEAD', path: '/', rejectUnauthorized: false, timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      const rtt = performance.now() - sentAt;
      const date = Date.parse(String(res.headers.date ?? ''));
      if (Number.isNaN(date)) return resolve(undefined);
      // The server's second began somewhere in [date, date + 1000): take its middle.
      resolve(Math.round(date + 500 - (sentWall + rtt / 2)));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
