import { isDeepStrictEqual } from 'node:util';
import type { GatewayTarget } from '../config';

/** A gateway in both lists whose entry differs, and what the difference touches. */
export interface ChangedGateway {
  before: GatewayTarget;
  after: GatewayTarget;
  /** Where or how the broker reaches it (host, ports, knock): its tunnel starts over. */
  tunnel: boolean;
  /**
   * The host keys it may present (a host key rotation's steps): its tunnel is kept while the
   * key it was verified against is still listed, and replaced make-before-break otherwise
   * (TunnelKeeper.setGateway).
   */
  hostKeys: boolean;
  /** Its Redis user (name or password hash): the user is rewritten and its sessions cut. */
  queueUser: boolean;
}

export interface GatewayListDiff {
  added: GatewayTarget[];
  removed: GatewayTarget[];
  changed: ChangedGateway[];
  /** Ids in both lists with identical entries. */
  unchanged: string[];
}

const TUNNEL_FIELDS = ['host', 'sshPort', 'httpsPort', 'knock'] as const;
const QUEUE_USER_FIELDS = ['queueUsername', 'queuePasswordSha256'] as const;

/**
 * What changes between the list a broker serves and a new one, by gateway id (pure). Order
 * does not matter; a knock secret is compared by its bytes. Every field of an entry
 * belongs to the tunnel, its host keys or the queue user, so an entry is changed exactly
 * when one of those three is.
 */
export function diffGatewayLists(before: readonly GatewayTarget[], after: readonly GatewayTarget[]): GatewayListDiff {
  const old = new Map(before.map((g) => [g.id, g]));
  const next = new Map(after.map((g) => [g.id, g]));
  const diff: GatewayListDiff = { added: [], removed: [], changed: [], unchanged: [] };
  for (const g of after) {
    const was = old.get(g.id);
    if (!was) {
      diff.added.push(g);
      continue;
    }
    const tunnel = TUNNEL_FIELDS.some((f) => !isDeepStrictEqual(was[f], g[f]));
    // As a set: the same keys in another order pin the same gateway.
    const hostKeys = !sameHashes(was.hostKeyFingerprints, g.hostKeyFingerprints);
    const queueUser = QUEUE_USER_FIELDS.some((f) => was[f] !== g[f]);
    if (tunnel || hostKeys || queueUser) diff.changed.push({ before: was, after: g, tunnel, hostKeys, queueUser });
    else diff.unchanged.push(g.id);
  }
  for (const g of before) if (!next.has(g.id)) diff.removed.push(g);
  return diff;
}

function sameHashes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h) => b.includes(h));
}

export function isEmptyDiff(d: GatewayListDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
