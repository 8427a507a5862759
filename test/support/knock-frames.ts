/**
 * Hand-built captured frames and pcap streams for the knock sniffer's tests: TCP segments
 * inside IPv4/IPv6 inside the link layers libpcap hands out. Plain byte layouts from the
 * RFCs and the pcap docs, independent of the decoder under test.
 */
import { isIPv4 } from 'node:net';

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

export interface TcpFields {
  sport: number;
  dport: number;
  seq: number;
  flags: number;
  /** Bytes of TCP options (multiple of 4). */
  options?: Buffer;
}

export function tcpSegment(f: TcpFields): Buffer {
  const options = f.options ?? Buffer.alloc(0);
  const b = Buffer.alloc(20 + options.length);
  b.writeUInt16BE(f.sport, 0);
  b.writeUInt16BE(f.dport, 2);
  b.writeUInt32BE(f.seq >>> 0, 4);
  b.writeUInt32BE(0, 8);
  b[12] = ((20 + options.length) / 4) << 4;
  b[13] = f.flags;
  b.writeUInt16BE(64240, 14);
  options.copy(b, 20);
  return b;
}

export function ipv4Bytes(address: string): Buffer {
  if (!isIPv4(address)) throw new TypeError(address);
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 address given as eight hex groups or in "::" text form. */
export function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new TypeError(address);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export interface Ipv4Options {
  src: string;
  dst?: string;
  protocol?: number;
  /** IP options (multiple of 4 bytes): makes IHL > 5. */
  options?: Buffer;
  /** Fragment offset in 8-byte units. */
  fragmentOffset?: number;
  moreFragments?: boolean;
}

export function ipv4Packet(payload: Buffer, o: Ipv4Options): Buffer {
  const options = o.options ?? Buffer.alloc(0);
  const hl = 20 + options.length;
  const b = Buffer.alloc(hl + payload.length);
  b[0] = 0x40 | (hl / 4);
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(0x1234, 4);
  b.writeUInt16BE(((o.moreFragments ? 1 : 0) << 13) | (o.fragmentOffset ?? 0), 6);
  b[8] = 64;
  b[9] = o.protocol ?? 6;
  ipv4Bytes(o.src).copy(b, 12);
  ipv4Bytes(o.dst ?? '192.0.2.1').copy(b, 16);
  options.copy(b, 20);
  payload.copy(b, hl);
  return b;
}

/** An IPv6 extension header: `type` is its own protocol number (0, 43, 44, 60); `bytes` renders it given the next header's number. */
export interface ExtensionHeader {
  type: number;
  bytes: (next: number) => Buffer;
}

/** Hop-by-hop (0) or destination options (60) header of `units` 8-byte units, padded with PadN. */
export function optionsHeader(type: 0 | 60, units = 1): ExtensionHeader {
  return {
    type,
    bytes: (next) => {
      const b = Buffer.alloc(units * 8);
      b[0] = next;
      b[1] = units - 1;
      b[2] = 1; // PadN
      b[3] = units * 8 - 4;
      return b;
    },
  };
}

export function fragmentHeader(offsetUnits: number, more: boolean): ExtensionHeader {
  return {
    type: 44,
    bytes: (next) => {
      const b = Buffer.alloc(8);
      b[0] = next;
      b.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
      b.writeUInt32BE(0xabcdef, 4);
      return b;
    },
  };
}

export interface Ipv6Options {
  src: string;
  dst?: string;
  protocol?: number;
  extensions?: ExtensionHeader[];
}

export function ipv6Packet(payload: Buffer, o: Ipv6Options): Buffer {
  const ext = o.extensions ?? [];
  const protocol = o.protocol ?? 6;
  const parts: Buffer[] = ext.map((e, i) => e.bytes(ext[i + 1]?.type ?? protocol));
  const rest = Buffer.concat([...parts, payload]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(rest.length, 4);
  h[6] = ext[0]?.type ?? protocol;
  h[7] = 64;
  ipv6Bytes(o.src).copy(h, 8);
  ipv6Bytes(o.dst ?? '2001:db8::ffff').copy(h, 24);
  return Buffer.concat([h, rest]);
}

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;

export function etherTypeOf(packet: Buffer): number {
  return packet[0]! >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
}

/** Ethernet II, optionally with 802.1Q (0x8100) / 802.1ad (0x88a8) tags (outermost first). */
export function ethernetFrame(packet: Buffer, vlanTpids: number[] = []): Buffer {
  const h = Buffer.alloc(12 + vlanTpids.length * 4 + 2);
  Buffer.from('020000000001020000000002', 'hex').copy(h, 0);
  vlanTpids.forEach((tpid, i) => {
    h.writeUInt16BE(tpid, 12 + i * 4);
    h.writeUInt16BE(100 + i, 14 + i * 4);
  });
  h.writeUInt16BE(etherTypeOf(packet), 12 + vlanTpids.length * 4);
  return Buffer.concat([h, packet]);
}

/** Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 16 bytes). `packetType` 0 = to us, 4 = outgoing. */
export function sllFrame(packet: Buffer, packetType = 0): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(packetType, 0);
  h.writeUInt16BE(1, 2); // ARPHRD_ETHER
  h.writeUInt16BE(6, 4);
  Buffer.from('020000000002', 'hex').copy(h, 6);
  h.writeUInt16BE(etherTypeOf(packet), 14);
  return Buffer.concat([h, packet]);
}

/** Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 20 bytes). `packetType` 0 = to us, 4 = outgoing. */
export function sll2Frame(packet: Buffer, packetType = 0): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(etherTypeOf(packet), 0);
  h.writeUInt32BE(2, 4); // interface index
  h.writeUInt16BE(1, 8); // ARPHRD_ETHER
  h[10] = packetType;
  h[11] = 6;
  Buffer.from('020000000002', 'hex').copy(h, 12);
  return Buffer.concat([h, packet]);
}

/** BSD loopback (LINKTYPE_NULL): address family in the capturing host's byte order. */
export function nullFrame(packet: Buffer, family: number, littleEndian = true): Buffer {
  const h = Buffer.alloc(4);
  if (littleEndian) h.writeUInt32LE(family, 0);
  else h.writeUInt32BE(family, 0);
  return Buffer.concat([h, packet]);
}

export interface PcapOptions {
  linkType: number;
  littleEndian?: boolean;
  nanoseconds?: boolean;
}

/** A classic pcap stream: 24-byte global header, then a 16-byte record header per frame. */
export function pcapStream(frames: Buffer[], o: PcapOptions): Buffer {
  const le = o.littleEndian ?? true;
  const u32 = (b: Buffer, v: number, at: number): void => {
    if (le) b.writeUInt32LE(v >>> 0, at);
    else b.writeUInt32BE(v >>> 0, at);
  };
  const u16 = (b: Buffer, v: number, at: number): void => {
    if (le) b.writeUInt16LE(v, at);
    else b.writeUInt16BE(v, at);
  };
  const g = Buffer.alloc(24);
  u32(g, o.nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  u16(g, 2, 4);
  u16(g, 4, 6);
  u32(g, 262144, 16);
  u32(g, o.linkType, 20);
  const records = frames.map((f, i) => {
    const r = Buffer.alloc(16);
    u32(r, 1_700_000_000 + i, 0);
    u32(r, i * 1000, 4);
    u32(r, f.length, 8);
    u32(r, f.length, 12);
    return Buffer.concat([r, f]);
  });
  return Buffer.concat([g, ...records]);
}

/** Deterministic PRNG (mulberry32) so "random" cases are the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
