/**
 * The kernel (BPF) filter for the knock sniffer: inbound pure TCP SYNs (SYN set; ACK, RST,
 * FIN clear), IPv4 and IPv6, not from loopback. Only those packets are copied to user
 * space, so established traffic (HTTPS bodies, the SSH tunnel) never reaches the sniffer.
 *
 * Every SYN counts, not only SYNs to knock ports: a SYN to any other port between two
 * steps is what tells a port scan from a knock. For IPv6, libpcap cannot index the TCP
 * header through extension headers (`tcp[...]` is IPv4-only), so the flags are read at the
 * fixed offset for a TCP header right after the IPv6 header (40 + 13); the decoder in
 * packet.ts re-checks the flags of anything that gets through.
 */
export function knockCaptureFilter(): string {
  const v4 = 'ip and tcp[tcpflags] & (tcp-syn|tcp-ack|tcp-rst|tcp-fin) == tcp-syn and not src net 127.0.0.0/8';
  const v6 = 'ip6 and ip6[6] == 6 and ip6[53] & 0x17 == 0x02 and not src host ::1';
  return `inbound and ((${v4}) or (${v6}))`;
}
