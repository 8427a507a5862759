import { isIPv4, isIPv6 } from 'node:net';

/**
 * The `from="pattern-list"` of an authorized_keys line, matched as OpenSSH's sshd does
 * with its default `UseDNS no` (the client's host name is its address):
 * match_host_and_ip(ip, ip, list) in match.c, which combines addr_match_list (CIDR
 * entries, then wildcard entries, against the address) and match_hostname (wildcard
 * entries against the lowercased address string). A `!` entry that matches refuses the
 * address whatever else matches; otherwise at least one entry must match.
 *
 * OpenSSH finds a malformed entry (an empty one, a mask longer than the address, host bits
 * set below the mask) only when it matches an address, and then refuses every address;
 * here such a list is refused when the file is read. Address forms that getaddrinfo reads
 * differently from their text (`127.1`, leading zeros, hex, IPv6 zones) are refused too:
 * read as patterns they would not match what OpenSSH matches, and a negated one would let
 * through an address OpenSSH keeps out.
 */

interface CidrEntry {
  kind: 'cidr';
  negated: boolean;
  bytes: Uint8Array;
  maskBits: number;
}

interface WildcardEntry {
  kind: 'wildcard';
  negated: boolean;
  pattern: string;
}

type Entry = CidrEntry | WildcardEntry;

export interface AddressPatternList {
  /** The list as written, for logs. */
  readonly text: string;
  readonly entries: readonly Entry[];
}

/** Thrown for a from= list that cannot be used; `message` says which entry and why. */
export class AddressPatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressPatternError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** What inet_aton (behind getaddrinfo) reads as an IPv4 address: 1 to 4 decimal, octal or hex parts. */
const INET_ATON_FORM = /^(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}$/i;
const IPV6_CHARS = /^[0-9a-f:.%]+$/i;

function ipv4Bytes(text: string): Uint8Array | undefined {
  if (!DOTTED_QUAD.test(text)) return undefined;
  return Uint8Array.from(text.split('.').map(Number));
}

function ipv6Bytes(text: string): Uint8Array | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = ipv4Bytes(g);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else out.push(Number.parseInt(g, 16));
    }
    return out;
  };
  const halves = text.split('::');
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const words = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  if (words.length !== 8) return undefined;
  return Uint8Array.from(words.flatMap((w) => [w >> 8, w & 0xff]));
}

/** The bytes of a literal IPv4 or IPv6 address, or undefined. */
export function addressBytes(text: string): Uint8Array | undefined {
  return isIPv4(text) ? ipv4Bytes(text) : ipv6Bytes(text);
}

function parseEntry(raw: string): Entry {
  const negated = raw.startsWith('!');
  const body = negated ? raw.slice(1) : raw;
  if (body === '') throw new AddressPatternError('an empty entry');
  const slash = body.indexOf('/');
  const addressText = slash < 0 ? body : body.slice(0, slash);
  const bytes = addressBytes(addressText);
  if (!bytes) {
    if (INET_ATON_FORM.test(addressText)) throw new AddressPatternError(`${JSON.stringify(body)} is not a dotted-quad IPv4 address`);
    if (addressText.includes(':') && (IPV6_CHARS.test(addressText) || isIPv6(addressText))) throw new AddressPatternError(`${JSON.stringify(body)} is not an IPv6 address`);
    // Not an address: a wildcard pattern (OpenSSH falls back to match_pattern).
    return { kind: 'wildcard', negated, pattern: body.toLowerCase() };
  }
  const fullBits = bytes.length * 8;
  let maskBits = fullBits;
  if (slash >= 0) {
    const m = body.slice(slash + 1);
    if (!/^\d{1,10}$/.test(m)) throw new AddressPatternError(`${JSON.stringify(body)} has no numeric mask length`);
    maskBits = Number(m);
    if (maskBits > fullBits) throw new AddressPatternError(`${JSON.stringify(body)}: mask longer than ${fullBits} bits`);
  }
  if (!hostBitsZero(bytes, maskBits)) throw new AddressPatternError(`${JSON.stringify(body)}: address bits set below the /${maskBits} mask`);
  return { kind: 'cidr', negated, bytes, maskBits };
}

function hostBitsZero(bytes: Uint8Array, maskBits: number): boolean {
  for (let bit = maskBits; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

function inNetwork(address: Uint8Array, net: Uint8Array, maskBits: number): boolean {
  if (address.length !== net.length) return false;
  for (let bit = 0; bit < maskBits; bit++) {
    const i = bit >> 3;
    const shift = 7 - (bit & 7);
    if (((address[i]! >> shift) & 1) !== ((net[i]! >> shift) & 1)) return false;
  }
  return true;
}

/**
 * OpenSSH's match_pattern: `*` matches any run of characters, `?` any one character,
 * everything else itself. An NFA over the pattern, like match.c's: linear, whatever the
 * pattern, so a hostile address cannot make it backtrack.
 */
export function matchWildcard(s: string, pattern: string): boolean {
  const m = pattern.length;
  let states = new Uint8Array(m + 1);
  const closure = (st: Uint8Array): void => {
    for (let i = 0; i < m; i++) if (st[i] && pattern[i] === '*') st[i + 1] = 1;
  };
  states[0] = 1;
  closure(states);
  for (const ch of s) {
    const next = new Uint8Array(m + 1);
    let active = false;
    for (let i = 0; i < m; i++) {
      if (!states[i]) continue;
      if (pattern[i] === '*') next[i] = 1;
      else if (pattern[i] === '?' || pattern[i] === ch) next[i + 1] = 1;
    }
    closure(next);
    for (const v of next) if (v) active = true;
    if (!active) return false;
    states = next;
  }
  return states[m] === 1;
}

/** Parses a from= pattern-list; throws AddressPatternError for a list OpenSSH could never match. */
export function parseAddressPatternList(text: string): AddressPatternList {
  const entries: Entry[] = [];
  for (const raw of text.split(',')) {
    try {
      entries.push(parseEntry(raw));
    } catch (err) {
      if (err instanceof AddressPatternError) throw new AddressPatternError(`from=${JSON.stringify(text)}: ${err.message}`);
      throw err;
    }
  }
  return { text, entries };
}

/**
 * Whether a client at `address` (a literal IPv4 or IPv6 address, IPv4-mapped forms already
 * unwrapped) may use a key carrying this from= list: match_host_and_ip(address, address, list).
 */
export function addressPermitted(list: AddressPatternList, address: string): boolean {
  const bytes = addressBytes(address);
  // addr_match_list: CIDR entries against the address, wildcard entries against its text.
  let byAddress = false;
  if (bytes) {
    for (const e of list.entries) {
      const hit = e.kind === 'cidr' ? inNetwork(bytes, e.bytes, e.maskBits) : matchWildcard(address, e.pattern);
      if (!hit) continue;
      if (e.negated) return false;
      byAddress = true;
    }
  }
  // match_hostname: every entry as a wildcard pattern against the lowercased host name,
  // which is the address itself without reverse DNS.
  // A CIDR entry read as a pattern can only match the address's own text, which the
  // address pass above has already decided, so only the wildcard entries matter here.
  const host = address.toLowerCase();
  let byName = false;
  for (const e of list.entries) {
    if (e.kind !== 'wildcard' || !matchWildcard(host, e.pattern)) continue;
    if (e.negated) return false;
    byName = true;
  }
  return byAddress || byName;
}
