import assert from 'node:assert/strict';
import { decodeSyn, formatIpv6, type LinkType } from '../../../../services/gateway/knock/packet';
import {
  ethernetFrame,
  fragmentHeader,
  ipv4Packet,
  ipv6Bytes,
  ipv6Packet,
  nullFrame,
  optionsHeader,
  seededRandom,
  sll2Frame,
  sllFrame,
  tcpSegment,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from '../../../support/knock-frames';

const SYN = { sport: 51234, dport: 7000, seq: 0xdeadbeef, flags: TCP_SYN };
const V4 = '198.51.100.23';
const V6 = '2001:db8:85a3::8a2e:370:7334';
const expectedV4 = { src: V4, sport: 51234, dport: 7000, seq: 0xdeadbeef };
const expectedV6 = { ...expectedV4, src: V6 };

const v4syn = (): Buffer => ipv4Packet(tcpSegment(SYN), { src: V4 });
const v6syn = (): Buffer => ipv6Packet(tcpSegment(SYN), { src: V6 });

/** Every link layer, each wrapping an IPv4 and an IPv6 SYN. */
const framings: { name: string; linkType: LinkType; wrap: (packet: Buffer, v6: boolean) => Buffer }[] = [
  { name: 'Ethernet', linkType: 'ETHERNET', wrap: (p) => ethernetFrame(p) },
  { name: 'Ethernet + 802.1Q', linkType: 'ETHERNET', wrap: (p) => ethernetFrame(p, [0x8100]) },
  { name: 'Ethernet + 802.1ad + 802.1Q', linkType: 'ETHERNET', wrap: (p) => ethernetFrame(p, [0x88a8, 0x8100]) },
  { name: 'Linux cooked v1', linkType: 'LINUX_SLL', wrap: (p) => sllFrame(p) },
  { name: 'Linux cooked v2', linkType: 'LINUX_SLL2', wrap: (p) => sll2Frame(p) },
  { name: 'raw IP', linkType: 'RAW', wrap: (p) => p },
  { name: 'BSD loopback (little-endian)', linkType: 'NULL', wrap: (p, v6) => nullFrame(p, v6 ? 30 : 2, true) },
  { name: 'BSD loopback (big-endian)', linkType: 'NULL', wrap: (p, v6) => nullFrame(p, v6 ? 24 : 2, false) },
];

describe('decodeSyn', () => {
  describe('link layers', () => {
    for (const f of framings) {
      it(`decodes an IPv4 SYN in ${f.name}`, () => {
        assert.deepEqual(decodeSyn(f.wrap(v4syn(), false), f.linkType), expectedV4);
      });
      it(`decodes an IPv6 SYN in ${f.name}`, () => {
        assert.deepEqual(decodeSyn(f.wrap(v6syn(), true), f.linkType), expectedV6);
      });
    }

    it('ignores non-IP ethertypes (ARP) and a VLAN tag with nothing after it', () => {
      const arp = ethernetFrame(v4syn());
      arp.writeUInt16BE(0x0806, 12);
      assert.equal(decodeSyn(arp, 'ETHERNET'), undefined);
      const bareTag = Buffer.concat([ethernetFrame(Buffer.alloc(0), [0x8100]).subarray(0, 14), Buffer.from([0, 100])]);
      assert.equal(decodeSyn(bareTag, 'ETHERNET'), undefined);
    });

    it('ignores a frame whose link layer disagrees with the IP version inside', () => {
      const lying = sllFrame(v6syn());
      lying.writeUInt16BE(0x0800, 14);
      assert.equal(decodeSyn(lying, 'LINUX_SLL'), undefined);
    });

    it('returns undefined for an unknown link type', () => {
      assert.equal(decodeSyn(v4syn(), 'IEEE802_11' as LinkType), undefined);
    });
  });

  describe('IPv4', () => {
    it('skips IP options (IHL > 5) to find the TCP header', () => {
      for (const words of [1, 2, 10]) {
        const options = Buffer.alloc(words * 4, 0x01); // NOPs
        const frame = ethernetFrame(ipv4Packet(tcpSegment(SYN), { src: V4, options }));
        assert.deepEqual(decodeSyn(frame, 'ETHERNET'), expectedV4, `${words} option words`);
      }
    });

    it('decodes a first fragment (offset 0, more fragments set)', () => {
      const frame = ipv4Packet(tcpSegment(SYN), { src: V4, moreFragments: true });
      assert.deepEqual(decodeSyn(frame, 'RAW'), expectedV4);
    });

    it('ignores a non-first fragment, whose payload is not a TCP header', () => {
      for (const offset of [1, 185, 0x1fff]) {
        const frame = ipv4Packet(tcpSegment(SYN), { src: V4, fragmentOffset: offset, moreFragments: offset !== 0x1fff });
        assert.equal(decodeSyn(frame, 'RAW'), undefined, `offset ${offset}`);
      }
    });

    it('ignores an IHL below 5 (malformed header)', () => {
      const frame = v4syn();
      frame[0] = 0x44;
      assert.equal(decodeSyn(frame, 'RAW'), undefined);
    });

    it('ignores protocols other than TCP', () => {
      for (const protocol of [1, 17, 41, 132]) {
        assert.equal(decodeSyn(ipv4Packet(tcpSegment(SYN), { src: V4, protocol }), 'RAW'), undefined, `protocol ${protocol}`);
      }
    });
  });

  describe('IPv6', () => {
    it('skips hop-by-hop and destination options extension headers', () => {
      const frame = ipv6Packet(tcpSegment(SYN), { src: V6, extensions: [optionsHeader(0), optionsHeader(60, 2)] });
      assert.deepEqual(decodeSyn(sll2Frame(frame), 'LINUX_SLL2'), expectedV6);
    });

    it('decodes the first fragment of a fragmented SYN', () => {
      const frame = ipv6Packet(tcpSegment(SYN), { src: V6, extensions: [fragmentHeader(0, true)] });
      assert.deepEqual(decodeSyn(frame, 'RAW'), expectedV6);
      const withOptions = ipv6Packet(tcpSegment(SYN), { src: V6, extensions: [optionsHeader(0), fragmentHeader(0, true), optionsHeader(60)] });
      assert.deepEqual(decodeSyn(withOptions, 'RAW'), expectedV6);
    });

    it('ignores a non-first fragment', () => {
      for (const offset of [1, 100, 8191]) {
        const frame = ipv6Packet(tcpSegment(SYN), { src: V6, extensions: [fragmentHeader(offset, false)] });
        assert.equal(decodeSyn(frame, 'RAW'), undefined, `offset ${offset}`);
      }
    });

    it('ignores protocols other than TCP, directly or behind extension headers', () => {
      assert.equal(decodeSyn(ipv6Packet(tcpSegment(SYN), { src: V6, protocol: 17 }), 'RAW'), undefined);
      assert.equal(decodeSyn(ipv6Packet(tcpSegment(SYN), { src: V6, protocol: 58 }), 'RAW'), undefined);
      assert.equal(decodeSyn(ipv6Packet(tcpSegment(SYN), { src: V6, protocol: 17, extensions: [optionsHeader(0)] }), 'RAW'), undefined);
      // No next header (59).
      assert.equal(decodeSyn(ipv6Packet(Buffer.alloc(20), { src: V6, protocol: 59 }), 'RAW'), undefined);
    });

    it('gives up on an endless chain of extension headers', () => {
      const chain = Array.from({ length: 9 }, () => optionsHeader(60));
      const frame = ipv6Packet(tcpSegment(SYN), { src: V6, extensions: chain });
      assert.equal(decodeSyn(frame, 'RAW'), undefined);
    });

    it('ignores a version nibble that is not 6', () => {
      const frame = v6syn();
      frame[0] = 0x50;
      assert.equal(decodeSyn(nullFrame(frame, 30), 'NULL'), undefined);
    });
  });

  describe('TCP flags', () => {
    it('decodes a SYN with other flags that are not ACK/RST/FIN (ECN, PSH, URG)', () => {
      for (const extra of [0x08, 0x20, 0x40, 0x80, 0xc0]) {
        const frame = ipv4Packet(tcpSegment({ ...SYN, flags: TCP_SYN | extra }), { src: V4 });
        assert.deepEqual(decodeSyn(frame, 'RAW'), expectedV4, `flags ${(TCP_SYN | extra).toString(16)}`);
      }
    });

    const refused: [string, number][] = [
      ['SYN+ACK', TCP_SYN | TCP_ACK],
      ['RST', TCP_RST],
      ['SYN+RST', TCP_SYN | TCP_RST],
      ['FIN', TCP_FIN],
      ['SYN+FIN', TCP_SYN | TCP_FIN],
      ['ACK', TCP_ACK],
      ['no flags', 0],
      ['all flags', 0xff],
    ];
    for (const [name, flags] of refused) {
      it(`ignores a ${name} segment`, () => {
        assert.equal(decodeSyn(ipv4Packet(tcpSegment({ ...SYN, flags }), { src: V4 }), 'RAW'), undefined);
        assert.equal(decodeSyn(ipv6Packet(tcpSegment({ ...SYN, flags }), { src: V6 }), 'RAW'), undefined);
      });
    }
  });

  describe('truncated and malformed frames', () => {
    const cases: { name: string; linkType: LinkType; frame: Buffer }[] = [
      ...framings.flatMap((f) => [
        { name: `${f.name} IPv4`, linkType: f.linkType, frame: f.wrap(v4syn(), false) },
        { name: `${f.name} IPv6`, linkType: f.linkType, frame: f.wrap(v6syn(), true) },
      ]),
      { name: 'IPv4 with options', linkType: 'RAW', frame: ipv4Packet(tcpSegment(SYN), { src: V4, options: Buffer.alloc(12, 1) }) },
      {
        name: 'IPv6 with extension headers',
        linkType: 'RAW',
        frame: ipv6Packet(tcpSegment(SYN), { src: V6, extensions: [optionsHeader(0, 2), fragmentHeader(0, true), optionsHeader(60)] }),
      },
    ];

    for (const c of cases) {
      it(`returns undefined, never throws, for every truncation of ${c.name}`, () => {
        assert.ok(decodeSyn(c.frame, c.linkType), 'the whole frame decodes');
        for (let len = 0; len < c.frame.length; len++) {
          let got: unknown;
          assert.doesNotThrow(() => {
            got = decodeSyn(c.frame.subarray(0, len), c.linkType);
          }, `length ${len}`);
          assert.equal(got, undefined, `length ${len} of ${c.frame.length}`);
        }
      });
    }

    it('never throws on random bytes for any link type', () => {
      const rnd = seededRandom(7);
      const types: LinkType[] = ['ETHERNET', 'LINUX_SLL', 'LINUX_SLL2', 'RAW', 'NULL'];
      for (let i = 0; i < 5000; i++) {
        const frame = Buffer.from(Array.from({ length: Math.floor(rnd() * 120) }, () => Math.floor(rnd() * 256)));
        // Bias toward plausible headers so the deeper branches are reached too.
        if (frame.length > 0 && rnd() < 0.5) frame[0] = rnd() < 0.5 ? 0x45 : 0x60;
        for (const t of types) assert.doesNotThrow(() => decodeSyn(frame, t));
      }
    });

    it('ignores a TCP header whose data offset is below 5 words', () => {
      const tcp = tcpSegment(SYN);
      tcp[12] = 0x40;
      assert.equal(decodeSyn(ipv4Packet(tcp, { src: V4 }), 'RAW'), undefined);
    });
  });
});

describe('formatIpv6', () => {
  /** Node's own canonical (RFC 5952) text for an address: the oracle. */
  const canonical = (groups: number[]): string => new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]`).hostname.slice(1, -1);
  const bytesOf = (groups: number[]): Buffer => {
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
    return b;
  };

  const cases: [string, number[]][] = [
    ['::1', [0, 0, 0, 0, 0, 0, 0, 1]],
    ['::', [0, 0, 0, 0, 0, 0, 0, 0]],
    ['2001:db8::1', [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]],
    ['fe80::1:0:0:1', [0xfe80, 0, 0, 0, 1, 0, 0, 1]],
    ['1:0:0:1::1', [1, 0, 0, 1, 0, 0, 0, 1]],
    ['1::2:0:0:3:4', [1, 0, 0, 2, 0, 0, 3, 4]],
    ['2001:db8:0:1:1:1:1:1', [0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]],
    ['1::', [1, 0, 0, 0, 0, 0, 0, 0]],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', [0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff]],
    ['2001:db8:abcd:12::ab00', [0x2001, 0xdb8, 0xabcd, 0x12, 0, 0, 0, 0xab00]],
    ['0:1:2:3:4:5:6:0', [0, 1, 2, 3, 4, 5, 6, 0]],
  ];

  for (const [text, groups] of cases) {
    it(`prints ${text} as Node does`, () => {
      assert.equal(canonical(groups), text, 'fixture agrees with Node');
      assert.equal(formatIpv6(bytesOf(groups), 0), text);
    });
  }

  it('reads the address at the given offset', () => {
    const b = Buffer.concat([Buffer.alloc(8, 0xee), ipv6Bytes('2001:db8::42'), Buffer.alloc(4, 0xee)]);
    assert.equal(formatIpv6(b, 8), '2001:db8::42');
  });

  it('matches Node on random addresses rich in zero groups', () => {
    const rnd = seededRandom(42);
    for (let i = 0; i < 2000; i++) {
      const groups = Array.from({ length: 8 }, () => (rnd() < 0.55 ? 0 : rnd() < 0.3 ? Math.floor(rnd() * 16) : Math.floor(rnd() * 65536)));
      assert.equal(formatIpv6(bytesOf(groups), 0), canonical(groups), groups.join(','));
    }
  });
});
