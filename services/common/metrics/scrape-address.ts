import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import { env } from '../config/env';
import { ConfigError } from '../errors/config-error';

/**
 * Where Prometheus scrapes a tier from another container: METRICS_SCRAPE_HOST, a name (or
 * address) that resolves to one address of this container on an internal network. /metrics
 * then also listens on that one address, so it answers on that network only: never on the
 * edge network a gateway or a broker is also attached to, as binding 0.0.0.0 would. A name
 * keeps compose free of fixed subnets: Docker gives each network its own, so the address is
 * known only once the container runs. Several containers may share the name (two brokers):
 * of the addresses it resolves to, the one this container holds is taken.
 */
export interface ScrapeAddress {
  address: string;
  family: 4 | 6;
  /**
   * The network it is on, as `address/prefix` (host bits as given: nft masks them): the
   * gateway's firewall lets this network, and no other source, reach the metrics port. A
   * packet from elsewhere forging a source in it gets no reply back: the handshake's answer
   * goes to the forged address, on the internal network.
   */
  subnet: string;
}

export type LocalInterfaces = ReturnType<typeof networkInterfaces>;

/** Host names (as Docker's network aliases are) and literal addresses. */
export const SCRAPE_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]+)$/;

/** METRICS_SCRAPE_HOST, declared once for the three tiers' configurations. */
export const METRICS_SCRAPE_HOST_ENV = env.optional(env.str({ pattern: SCRAPE_HOST, expected: 'a host name or address of this container' }));

export async function resolveScrapeAddress(
  variable: string,
  host: string,
  deps: { resolve?: (host: string) => Promise<{ address: string; family: number }[]>; interfaces?: () => LocalInterfaces } = {},
): Promise<ScrapeAddress> {
  const resolve = deps.resolve ?? ((h: string) => lookup(h, { all: true }));
  const fail = (why: string): ConfigError => new ConfigError([`${variable}=${JSON.stringify(host)}: ${why}`]);
  let resolved: { address: string; family: number }[];
  try {
    resolved = await resolve(host);
  } catch (err) {
    throw fail(`cannot be resolved (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const local = new Map<string, ScrapeAddress>();
  for (const addrs of Object.values((deps.interfaces ?? networkInterfaces)())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.cidr === null) continue;
      if (resolved.some((r) => r.address === a.address)) local.set(a.address, { address: a.address, family: a.family === 'IPv6' ? 6 : 4, subnet: a.cidr });
    }
  }
  const found = [...local.values()];
  if (found.length === 0) throw fail(`resolves to ${resolved.map((r) => r.address).join(', ') || 'nothing'}, none of them an address of this container outside loopback`);
  if (found.length > 1) throw fail(`resolves to several addresses of this container (${found.map((f) => f.address).join(', ')}): name one network's`);
  return found[0]!;
}
