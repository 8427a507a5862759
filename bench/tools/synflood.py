#!/usr/bin/env python3
"""A bounded TCP SYN flood for the knock sniffer benchmark.

Sends pure SYNs (raw IPv4 socket, IP_HDRINCL) to TARGET on the given ports at RATE packets
per second for SECONDS, with source addresses drawn at random from SOURCE_CIDR (default: a
test-only /16), so the gateway has to track a flood of distinct spoofed sources. Only ever
run against the project's own containers. Prints one JSON line: packets sent, seconds, pps.

usage: synflood.py TARGET PORTS RATE SECONDS [SOURCE_CIDR [DISTINCT [OFFSET [cycle]]]]
  PORTS like 7000 or 7000,8000,9000 or 40000-40999
  DISTINCT  instead of random sources: one SYN from each of the addresses OFFSET ..
            OFFSET+DISTINCT-1 of SOURCE_CIDR (scattered over it), then stop (or, with
            `cycle`, go round them again until SECONDS). Each address always has the same
            source and destination port, so a second run from the same addresses is the same
            flows to the connection tracking of the host's bridge (br_netfilter), not new
            entries in its table; the sequence number is new each time, so to the gateway
            each SYN is a fresh attempt, not a retransmission.
"""
import ipaddress
import json
import math
import random
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ports_of(spec: str) -> list:
    if "-" in spec:
        a, b = spec.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(p) for p in spec.split(",")]


def syn(src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def distinct_packets(net, dst: bytes, ports: list, count: int, offset: int, cycle: bool):
    """SYNs from `count` addresses of `net` from `offset` on, built as they are sent."""
    base, usable = int(net.network_address) + 1, net.num_addresses - 2
    # A stride coprime with the range visits each of its addresses once per pass, scattered.
    stride = next(k for k in range(40503, 40503 + usable) if math.gcd(k, usable) == 1)
    while True:
        for i in range(offset, offset + count):
            index = (i * stride) % usable
            sport = 1024 + (index * 7919) % 64000
            yield syn(struct.pack("!I", base + index), dst, sport, ports[index % len(ports)], random.getrandbits(32))
        if not cycle:
            return


def send_paced(s, target: str, packets, rate: int, seconds: float) -> None:
    """Sends from `packets` at `rate` per second until it runs out or SECONDS pass; prints the JSON line."""
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    batch = max(1, rate // 1000)
    done = False
    while not done:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * rate)
        while sent < due and not done:
            for _ in range(min(batch, due - sent)):
                packet = next(packets, None)
                if packet is None:
                    done = True
                    break
                s.sendto(packet, (target, 0))
                sent += 1
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "seconds": round(elapsed, 3), "pps": round(sent / elapsed)}))


def main() -> None:
    target, port_spec, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    net = ipaddress.ip_network(sys.argv[5] if len(sys.argv) > 5 else "10.203.0.0/16")
    ports = ports_of(port_spec)
    dst = socket.inet_aton(target)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    if len(sys.argv) > 6:
        count, offset = int(sys.argv[6]), int(sys.argv[7]) if len(sys.argv) > 7 else 0
        cycle = len(sys.argv) > 8 and sys.argv[8] == "cycle"
        send_paced(s, target, distinct_packets(net, dst, ports, count, offset, cycle), rate, seconds)
        return
    base, size = int(net.network_address), net.num_addresses
    # Pre-build a pool of packets so the send loop is cheap; sources cycle through many
    # distinct addresses.
    pool = [
        syn(struct.pack("!I", base + random.randrange(1, size - 1)), dst, random.randrange(1024, 65535), random.choice(ports), random.getrandbits(32))
        for _ in range(50_000)
    ]
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    batch = max(1, rate // 1000)
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * rate)
        while sent < due:
            for _ in range(min(batch, due - sent)):
                s.sendto(pool[sent % len(pool)], (target, 0))
                sent += 1
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "seconds": round(elapsed, 3), "pps": round(sent / elapsed)}))


if __name__ == "__main__":
    main()
