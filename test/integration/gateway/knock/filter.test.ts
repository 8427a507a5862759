import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { decodeSyn, type LinkType } from '../../../../services/gateway/knock/packet';
import { knockCaptureFilter } from '../../../../services/gateway/knock/filter';
import { PcapStreamReader } from '../../../../services/gateway/knock/pcap-stream';
import { requireBinary } from '../../../support/binaries';
import {
  ipv4Packet,
  ipv6Packet,
  pcapStream,
  sll2Frame,
  sllFrame,
  tcpSegment,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from '../../../support/knock-frames';

const OUTGOING = 4;

describe('knock capture filter with the real tcpdump', () => {
  let tcpdump: string;

  before(() => {
    tcpdump = requireBinary('tcpdump', '/usr/bin/tcpdump', '/usr/sbin/tcpdump');
  });

  for (const linkType of ['LINUX_SLL2', 'LINUX_SLL']) {
    it(`compiles to BPF for the "any" device (${linkType})`, () => {
      const r = spawnSync(tcpdump, ['-d', '-y', linkType, '-i', 'any', knockCaptureFilter()], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(r.status, 0, r.stderr);
      // A compiled program: numbered instructions ending in returns.
      assert.match(r.stdout, /^\(000\) /);
      assert.match(r.stdout, /ret\s+#0\s*$/m);
    });
  }

  it('fails to compile a broken filter (the check above can fail)', () => {
    const r = spawnSync(tcpdump, ['-d', '-y', 'LINUX_SLL2', '-i', 'any', `${knockCaptureFilter()} and (`], { encoding: 'utf8', timeout: 10_000 });
    assert.notEqual(r.status, 0);
  });

  it('passes exactly the inbound pure SYNs from non-loopback sources', () => {
    const syn = (src: string, flags = TCP_SYN, dport = 7000): Buffer => {
      const tcp = tcpSegment({ sport: 40000, dport, seq: 1234, flags });
      return src.includes(':') ? ipv6Packet(tcp, { src }) : ipv4Packet(tcp, { src });
    };
    const frames: { label: string; frame: Buffer; pass: boolean }[] = [
      { label: 'IPv4 SYN', frame: sll2Frame(syn('198.51.100.7', TCP_SYN, 7001)), pass: true },
      { label: 'IPv4 SYN with IP options', frame: sll2Frame(ipv4Packet(tcpSegment({ sport: 40000, dport: 7002, seq: 1, flags: TCP_SYN }), { src: '198.51.100.8', options: Buffer.alloc(8, 1) })), pass: true },
      { label: 'IPv4 SYN+ECN', frame: sll2Frame(syn('198.51.100.9', TCP_SYN | 0xc0, 7003)), pass: true },
      { label: 'IPv6 SYN', frame: sll2Frame(syn('2001:db8::7', TCP_SYN, 7004)), pass: true },
      { label: 'IPv4 SYN+ACK', frame: sll2Frame(syn('198.51.100.7', TCP_SYN | TCP_ACK)), pass: false },
      { label: 'IPv4 ACK', frame: sll2Frame(syn('198.51.100.7', TCP_ACK)), pass: false },
      { label: 'IPv4 RST', frame: sll2Frame(syn('198.51.100.7', TCP_RST)), pass: false },
      { label: 'IPv4 SYN+FIN', frame: sll2Frame(syn('198.51.100.7', TCP_SYN | TCP_FIN)), pass: false },
      { label: 'IPv4 outgoing SYN', frame: sll2Frame(syn('198.51.100.7'), OUTGOING), pass: false },
      { label: 'IPv4 SYN from loopback', frame: sll2Frame(syn('127.0.0.1')), pass: false },
      { label: 'IPv4 SYN from 127.8.9.10', frame: sll2Frame(syn('127.8.9.10')), pass: false },
      { label: 'IPv4 UDP', frame: sll2Frame(ipv4Packet(tcpSegment({ sport: 1, dport: 7000, seq: 0, flags: TCP_SYN }), { src: '198.51.100.7', protocol: 17 })), pass: false },
      { label: 'IPv6 SYN+ACK', frame: sll2Frame(syn('2001:db8::7', TCP_SYN | TCP_ACK)), pass: false },
      { label: 'IPv6 RST', frame: sll2Frame(syn('2001:db8::7', TCP_RST)), pass: false },
      { label: 'IPv6 outgoing SYN', frame: sll2Frame(syn('2001:db8::7'), OUTGOING), pass: false },
      { label: 'IPv6 SYN from ::1', frame: sll2Frame(syn('::1')), pass: false },
    ];
    const input = pcapStream(
      frames.map((f) => f.frame),
      { linkType: 276 },
    );
    const r = spawnSync(tcpdump, ['-n', '-r', '-', '-w', '-', knockCaptureFilter()], { input, timeout: 10_000, maxBuffer: 1 << 20 });
    assert.equal(r.status, 0, r.stderr.toString());

    const passed: Buffer[] = [];
    let link: LinkType | undefined;
    const reader = new PcapStreamReader((frame, linkType) => {
      passed.push(Buffer.from(frame));
      link = linkType;
    });
    reader.push(r.stdout);
    assert.equal(reader.linkType, 'LINUX_SLL2');
    const expected = frames.filter((f) => f.pass);
    assert.deepEqual(
      passed.map((p) => frames.find((f) => f.frame.equals(p))?.label ?? 'unknown frame'),
      expected.map((f) => f.label),
    );
    // And the decoder agrees with the kernel filter on each of them.
    assert.deepEqual(
      passed.map((p) => decodeSyn(p, link!)?.dport),
      [7001, 7002, 7003, 7004],
    );
  });

  it('uses the packet direction of Linux cooked v1 captures too', () => {
    const tcp = tcpSegment({ sport: 40000, dport: 7000, seq: 1, flags: TCP_SYN });
    const inbound = sllFrame(ipv4Packet(tcp, { src: '203.0.113.1' }));
    const outbound = sllFrame(ipv4Packet(tcp, { src: '203.0.113.2' }), OUTGOING);
    const r = spawnSync(tcpdump, ['-n', '-r', '-', '-w', '-', knockCaptureFilter()], { input: pcapStream([outbound, inbound], { linkType: 113 }), timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr.toString());
    const srcs: string[] = [];
    new PcapStreamReader((frame, linkType) => srcs.push(decodeSyn(frame, linkType)?.src ?? '?')).push(r.stdout);
    assert.deepEqual(srcs, ['203.0.113.1']);
  });
});
