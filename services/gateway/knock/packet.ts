import type { Syn } from './tracker';

/**
 * Decodes captured frames down to the one thing the knock tracker needs: a pure TCP SYN
 * (SYN set; ACK, RST and FIN clear) with its addresses. Everything else — other
 * protocols, non-first fragments, truncated or malformed headers — decodes to undefined.
 * Pure and allocation-light: under a SYN flood it runs for every packet.
 */
/** Link-layer header types of captured frames (pcap LINKTYPE_* values 1, 113, 276, 101, 0). */
export type LinkType = 'ETHERNET' | 'LINUX_SLL' | 'LINUX_SLL2' | 'RAW' | 'NULL';

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const PROTO_TCP = 6;
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;

export function decodeSyn(frame: Buffer, linkType: LinkType): Syn | undefined {
  let offset: number;
  let etherType: number;
  switch (linkType) {
    case 'ETHERNET': {
      if (frame.length < 14) return undefined;
      offset = 14;
      etherType = frame.readUInt16BE(12);
      while ((etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) && frame.length >= offset + 4) {
        etherType = frame.readUInt16BE(offset + 2);
        offset += 4;
      }
      break;
    }
    case 'LINUX_SLL':
      if (frame.length < 16) return undefined;
      etherType = frame.readUInt16BE(14);
      offset = 16;
      break;
    case 'LINUX_SLL2':
      if (frame.length < 20) return undefined;
      etherType = frame.readUInt16BE(0);
      offset = 20;
      break;
    case 'NULL': {
      // BSD loopback: 4-byte host-order address family; 2 = IPv4, 24/28/30 = IPv6.
      if (frame.length < 4) return undefined;
      const af = frame.readUInt32LE(0) === 2 || frame.readUInt32BE(0) === 2 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
      etherType = af;
      offset = 4;
      break;
    }
    case 'RAW':
      if (frame.length < 1) return undefined;
      etherType = frame[0]! >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
      offset = 0;
      break;
    default:
      return undefined;
  }
  if (etherType === ETHERTYPE_IPV4) return decodeIpv4(frame, offset);
  if (etherType === ETHERTYPE_IPV6) return decodeIpv6(frame, offset);
  return undefined;
}

function decodeIpv4(b: Buffer, o: number): Syn | undefined {
  if (b.length < o + 20 || b[o]! >> 4 !== 4) return undefined;
  const ihl = (b[o]! & 0x0f) * 4;
  if (ihl < 20 || b[o + 9] !== PROTO_TCP) return undefined;
  // A non-first fragment carries no TCP header.
  if ((b.readUInt16BE(o + 6) & 0x1fff) !== 0) return undefined;
  const src = `${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  return decodeTcp(b, o + ihl, src);
}

function decodeIpv6(b: Buffer, o: number): Syn | undefined {
  if (b.length < o + 40 || b[o]! >> 4 !== 6) return undefined;
  const src = formatIpv6(b, o + 8);
  let next = b[o + 6]!;
  let p = o + 40;
  // Skip the extension headers a SYN may plausibly carry.
  for (let hops = 0; hops < 8 && next !== PROTO_TCP; hops++) {
    if (b.length < p + 8) return undefined;
    if (next === 0 || next === 43 || next === 60) {
      const len = (b[p + 1]! + 1) * 8;
      next = b[p]!;
      p += len;
    } else if (next === 44) {
      if ((b.readUInt16BE(p + 2) & 0xfff8) !== 0) return undefined;
      next = b[p]!;
      p += 8;
    } else {
      return undefined;
    }
  }
  if (next !== PROTO_TCP) return undefined;
  return decodeTcp(b, p, src);
}

function decodeTcp(b: Buffer, o: number, src: string): Syn | undefined {
  // The fixed 20-byte header must be there and say so (data offset >= 5 words).
  if (b.length < o + 20 || b[o + 12]! >> 4 < 5) return undefined;
  const flags = b[o + 13]!;
  if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) !== TCP_SYN) return undefined;
  return { src, sport: b.readUInt16BE(o), dport: b.readUInt16BE(o + 2), seq: b.readUInt32BE(o + 4) };
}

/** RFC 5952 text form (lowercase, longest zero run compressed), as Node and nft print it. */
export function formatIpv6(b: Buffer, o: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(o + i * 2));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
