import { isIPv4, isIPv6 } from 'node:net';
import type { KnockSpec } from '../../common/knock/sequence';

/**
 * The gateway's nftables table, rendered as text for `nft -f` (pure, unit tested). Two
 * scopes, because the same table means different things depending on whose network
 * namespace it lands in:
 *
 * - `namespace` (the container has a network namespace of its own, as in compose): the
 *   table governs the whole input of that namespace. Policy drop: only loopback, replies
 *   to our own connections, ICMP, the public HTTP(S) ports and — per source, for a short
 *   window after a correct knock — the SSH port are accepted. Everything else, knock
 *   ports included, is dropped without a reply (no RST), so a scan sees "filtered" and
 *   learns nothing.
 * - `ports` (host networking: the namespace is the host's, shared with its own sshd and
 *   whatever else it runs): the table governs the gateway's own ports only — the SSH
 *   port, the knock ports and, when metrics are filtered, the metrics port. Policy accept,
 *   and every drop is guarded by one of those ports, so no other packet's verdict
 *   changes: in nftables a packet accepted by one base chain still goes through every
 *   other table's chains on the hook, so the host's own rules keep deciding the rest (and
 *   can still drop what we let through). The chain runs just before the standard filter
 *   priority so that our ports stay silently filtered even if a host rule would accept or
 *   reject them. The knock SYNs are dropped here like any other packet to those ports;
 *   the sniffer still sees them, since packet capture taps the interface before the
 *   input hook.
 *
 * In both scopes an established SSH session survives the window (conntrack), which is
 * what lets a broker keep its tunnel; an outgoing connection whose local port happens to
 * fall in the knock range keeps working for the same reason.
 */
export const TABLE = 'nonstop_gateway';
export const SET_V4 = 'ssh_allowed_v4';
export const SET_V6 = 'ssh_allowed_v6';

export type FirewallScope = 'namespace' | 'ports';

/** An inclusive TCP port range; a single port is [p, p]. */
export type PortRange = readonly [number, number];

export interface RulesetOptions {
  scope: FirewallScope;
  /** Accepted from anywhere in `namespace` scope; not ours to govern in `ports` scope. */
  publicPorts: number[];
  sshPort: number;
  /** The ports knocks arrive on: dropped in `ports` scope (the policy drops them in `namespace`). */
  knockPorts: PortRange[];
  /** Sources allowed to reach the metrics port, when metrics listen beyond loopback. */
  metrics?: { port: number; allowCidrs: string[] };
  /** Upper bound of simultaneously open windows (nft set size). */
  maxOpenWindows: number;
}

/** The ports a knock may use under `spec`: the static sequence, or the whole time-based range. */
export function knockPortRanges(spec: KnockSpec): PortRange[] {
  return spec.mode === 'static' ? spec.ports.map((p) => [p, p] as const) : [[spec.rangeStart, spec.rangeEnd]];
}

/**
 * Sorted, with overlapping and adjacent ranges merged, as an nft anonymous set: older nft
 * versions refuse overlapping intervals, and a static sequence may repeat a port.
 */
function portSet(ranges: readonly PortRange[]): string {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = merged.at(-1);
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return `{ ${merged.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`)).join(', ')} }`;
}

function metricsRules(m: RulesetOptions['metrics']): string[] {
  if (!m || m.allowCidrs.length === 0) return [];
  const v4 = m.allowCidrs.filter((c) => isIPv4(c.split('/')[0] ?? ''));
  const v6 = m.allowCidrs.filter((c) => isIPv6(c.split('/')[0] ?? ''));
  const out: string[] = [];
  if (v4.length > 0) out.push(`    tcp dport ${m.port} ip saddr { ${v4.join(', ')} } accept`);
  if (v6.length > 0) out.push(`    tcp dport ${m.port} ip6 saddr { ${v6.join(', ')} } accept`);
  return out;
}

function namespaceChain(o: RulesetOptions): string[] {
  return [
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
    ...metricsRules(o.metrics),
  ];
}

/** Every drop is guarded by `tcp dport <ours>`; an accept only hands the packet on to the host's chains. */
function portsChain(o: RulesetOptions): string[] {
  const metrics: PortRange[] = o.metrics && o.metrics.allowCidrs.length > 0 ? [[o.metrics.port, o.metrics.port]] : [];
  const ours = portSet([[o.sshPort, o.sshPort], ...o.knockPorts, ...metrics]);
  return [
    `    type filter hook input priority filter - 10; policy accept;`,
    `    iif "lo" accept`,
    `    tcp dport ${ours} ct state invalid drop`,
    `    tcp dport ${ours} ct state established,related accept`,
    `    tcp dport ${o.sshPort} ip saddr @${SET_V4} accept`,
    `    tcp dport ${o.sshPort} ip6 saddr @${SET_V6} accept`,
    ...metricsRules(o.metrics),
    `    tcp dport ${ours} drop`,
  ];
}

export function renderRuleset(o: RulesetOptions): string {
  return [
    // Create-then-delete makes the load idempotent; the whole file is one transaction,
    // so the old table is replaced atomically. Only our own table is named: nothing
    // else is flushed or replaced.
    `table inet ${TABLE}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    `  set ${SET_V4} { type ipv4_addr; flags timeout; size ${o.maxOpenWindows}; }`,
    `  set ${SET_V6} { type ipv6_addr; flags timeout; size ${o.maxOpenWindows}; }`,
    `  chain input {`,
    ...(o.scope === 'namespace' ? namespaceChain(o) : portsChain(o)),
    '  }',
    '}',
    '',
  ].join('\n');
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
