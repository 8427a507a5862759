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
  /**
   * Its Redis user (name or password hashes): the user is rewritten, and its sessions cut
   * unless the two entries share a password (a rotation's overlap: see sharesPassword).
   */
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
    const queueUser = was.queueUsername !== g.queueUsername || !sameHashes(was.queuePasswordSha256, g.queuePasswordSha256);
    if (tunnel || hostKeys || queueUser) diff.changed.push({ before: was, after: g, tunnel, hostKeys, queueUser });
    else diff.unchanged.push(g.id);
  }
  for (const g of before) if (!next.has(g.id)) diff.removed.push(g);
  return diff;
}

function sameHashes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h) => b.includes(h));
}

/**
 * Whether a gateway's old and new entries accept a password in common: the step into a
 * rotation's overlap (a hash added) or out of it (the old hash retired). Its open Redis
 * connections are then kept: Redis does not cut them when a user's passwords change, and
 * the gateway has moved them to its new password (re-AUTH) before the old one is retired,
 * which Redis cannot tell apart from connections still on the old one, so cutting at
 * retire would fail requests in flight. An entry whose passwords were all replaced at once
 * (no overlap) has its connections cut: they may hold the password that was replaced.
 */
export function sharesPassword(before: GatewayTarget, after: GatewayTarget): boolean {
  return before.queuePasswordSha256.some((h) => after.queuePasswordSha256.includes(h));
}

export function isEmptyDiff(d: GatewayListDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
