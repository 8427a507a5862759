import { isIPv4, isIPv6 } from 'node:net';

/**
 * The gateway's nftables table, rendered as text for `nft -f` (pure, unit tested).
 *
 * Input policy is drop: only loopback, replies to our own connections, ICMP, the public
 * HTTP(S) ports and — per source, for a short window after a correct knock — the SSH port
 * are accepted. Everything else, knock ports included, is dropped without a reply (no RST),
 * so a scan sees "filtered" and learns nothing. An established SSH session survives the
 * window (conntrack), which is what lets a broker keep its tunnel.
 */
export const TABLE = 'nonstop_gateway';
export const SET_V4 = 'ssh_allowed_v4';
export const SET_V6 = 'ssh_allowed_v6';

export interface RulesetOptions {
  publicPorts: number[];
  sshPort: number;
  /** Sources allowed to reach the metrics port, when metrics listen beyond loopback. */
  metrics?: { port: number; allowCidrs: string[] };
  /** Upper bound of simultaneously open windows (nft set size). */
  maxOpenWindows: number;
}

export function renderRuleset(o: RulesetOptions): string {
  const lines = [
    // Create-then-delete makes the load idempotent; the whole file is one transaction,
    // so the old table is replaced atomically.
    `table inet ${TABLE}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    `  set ${SET_V4} { type ipv4_addr; flags timeout; size ${o.maxOpenWindows}; }`,
    `  set ${SET_V6} { type ipv6_addr; flags timeout; size ${o.maxOpenWindows}; }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy drop;`,
    `    iif "lo" accept`,
    `    ct state invalid drop`,
    `    ct state established,related accept`,
    // Numeric protocols: the image has no /etc/protocols to resolve names from.
    `    meta l4proto 1 accept`,
    `    meta l4proto 58 accept`,
    `    tcp dport { ${o.publicPorts.join(', ')} } accept`,
    `    tcp dport ${o.sshPort} ip saddr @${SET_V4} accept`,
    `    tcp dport ${o.sshPort} ip6 saddr @${SET_V6} accept`,
  ];
  if (o.metrics && o.metrics.allowCidrs.length > 0) {
    const v4 = o.metrics.allowCidrs.filter((c) => isIPv4(c.split('/')[0] ?? ''));
    const v6 = o.metrics.allowCidrs.filter((c) => isIPv6(c.split('/')[0] ?? ''));
    if (v4.length > 0) lines.push(`    tcp dport ${o.metrics.port} ip saddr { ${v4.join(', ')} } accept`);
    if (v6.length > 0) lines.push(`    tcp dport ${o.metrics.port} ip6 saddr { ${v6.join(', ')} } accept`);
  }
  lines.push('  }', '}', '');
  return lines.join('\n');
}

function setFor(address: string): string {
  if (isIPv4(address)) return SET_V4;
  if (isIPv6(address)) return SET_V6;
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/**
 * Opens (or re-opens) the window for `address`. Add, delete, add in one transaction: the
 * element ends up present exactly once with a fresh timeout, whether or not it was there.
 */
export function renderAllow(address: string, windowMs: number): string {
  const set = setFor(address);
  const el = `add element inet ${TABLE} ${set} { ${address} }`;
  return [el, `delete element inet ${TABLE} ${set} { ${address} }`, `add element inet ${TABLE} ${set} { ${address} timeout ${Math.max(1, Math.ceil(windowMs))}ms }`, ''].join('\n');
}

/** Closes the window for `address` if open (add-then-delete never fails on absence). */
export function renderRevoke(address: string): string {
  const set = setFor(address);
  return [`add element inet ${TABLE} ${set} { ${address} }`, `delete element inet ${TABLE} ${set} { ${address} }`, ''].join('\n');
}

export function renderRemoveTable(): string {
  return `table inet ${TABLE}\ndelete table inet ${TABLE}\n`;
}
