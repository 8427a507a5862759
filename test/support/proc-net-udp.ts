/**
 * The kernel's table of UDP sockets in one network namespace (/proc/net/udp and
 * /proc/net/udp6), read into addresses. It lists every socket of every process in the
 * namespace, whoever owns it, so it is a complete inventory where `ss` is not installed
 * (the images have no iproute2). A scan can only show a UDP port that answers; this shows
 * a socket that stays silent too. A file that is not the kernel's table (no header, a line
 * that does not parse) is an error, never "no sockets".
 */

export interface UdpSocket {
  family: 4 | 6;
  /** Local address in text form (IPv6 compressed, IPv4-mapped as ::ffff:a.b.c.d). */
  address: string;
  port: number;
  remoteAddress: string;
  remotePort: number;
  /** The kernel's socket state: 7 (TCP_CLOSE) for an unconnected socket, 1 once connected. */
  state: number;
}

export class ProcNetUdpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProcNetUdpError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const HEADER = /^\s*sl\s+local_address\s+rem(ote)?_address\s+st\b/;

/** The kernel prints each 32-bit word of an address in host byte order (little-endian here). */
function addressBytes(hex: string): number[] {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = hex.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(word.slice(b, b + 2), 16));
  }
  return bytes;
}

function addressText(hex: string): string {
  const bytes = addressBytes(hex);
  if (bytes.length === 4) return bytes.join('.');
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The URL parser writes an IPv6 address in its canonical compressed form.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Parses the text of /proc/net/udp (`family` 4) or /proc/net/udp6 (`family` 6). */
export function parseProcNetUdp(text: string, family: 4 | 6): UdpSocket[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (!lines[0] || !HEADER.test(lines[0])) throw new ProcNetUdpError(`not a /proc/net/udp table: ${JSON.stringify(text.slice(0, 200))}`);
  const width = family === 4 ? 8 : 32;
  const row = new RegExp(`^\\s*\\d+: ([0-9A-F]{${width}}):([0-9A-F]{4}) ([0-9A-F]{${width}}):([0-9A-F]{4}) ([0-9A-F]{2}) `);
  return lines.slice(1).map((line) => {
    const m = row.exec(line);
    if (!m) throw new ProcNetUdpError(`unparsable line for IPv${family}: ${JSON.stringify(line)}`);
    return {
      family,
      address: addressText(m[1]!),
      port: parseInt(m[2]!, 16),
      remoteAddress: addressText(m[3]!),
      remotePort: parseInt(m[4]!, 16),
      state: parseInt(m[5]!, 16),
    };
  });
}

/** 127.0.0.0/8, ::1, or an IPv4-mapped 127.0.0.0/8 address. */
export function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || /^::ffff:127\./i.test(address);
}

/** Sockets another host could send to: bound to anything but loopback (the wildcard included). */
export function beyondLoopback(sockets: UdpSocket[]): UdpSocket[] {
  return sockets.filter((s) => !isLoopback(s.address));
}
