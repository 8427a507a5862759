import assert from 'node:assert/strict';
import type { LinkType } from '../../../../services/gateway/knock/packet';
import { PcapStreamError, PcapStreamReader } from '../../../../services/gateway/knock/pcap-stream';
import { pcapStream, seededRandom, type PcapOptions } from '../../../support/knock-frames';

/** Frames of assorted sizes, including empty ones and jumbo-sized ones spanning many chunks. */
function sampleFrames(): Buffer[] {
  const rnd = seededRandom(1);
  const sizes = [60, 0, 1, 74, 128, 1514, 15, 9000, 16, 17, 94];
  return sizes.map((n) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256))));
}

function read(chunks: Buffer[]): { frames: Buffer[]; linkTypes: LinkType[]; reader: PcapStreamReader } {
  const frames: Buffer[] = [];
  const linkTypes: LinkType[] = [];
  const reader = new PcapStreamReader((frame, linkType) => {
    frames.push(frame);
    linkTypes.push(linkType);
  });
  for (const c of chunks) reader.push(c);
  return { frames, linkTypes, reader };
}

function chunked(stream: Buffer, sizes: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < stream.length; ) {
    const n = Math.max(1, sizes());
    // Copies, so the reader cannot lean on the caller's buffer staying the same object.
    out.push(Buffer.from(stream.subarray(at, at + n)));
    at += n;
  }
  return out;
}

const variants: { name: string; opts: PcapOptions }[] = [
  { name: 'little-endian microsecond', opts: { linkType: 276, littleEndian: true } },
  { name: 'big-endian microsecond', opts: { linkType: 276, littleEndian: false } },
  { name: 'little-endian nanosecond', opts: { linkType: 276, littleEndian: true, nanoseconds: true } },
  { name: 'big-endian nanosecond', opts: { linkType: 276, littleEndian: false, nanoseconds: true } },
];

describe('PcapStreamReader', () => {
  for (const v of variants) {
    describe(`${v.name} stream`, () => {
      const frames = sampleFrames();
      const stream = pcapStream(frames, v.opts);

      it('yields every frame when fed in one piece', () => {
        const got = read([stream]);
        assert.deepEqual(got.frames, frames);
        assert.equal(got.reader.frames, frames.length);
        assert.equal(got.reader.linkType, 'LINUX_SLL2');
        assert.ok(got.linkTypes.every((t) => t === 'LINUX_SLL2'));
      });

      it('yields the same frames when fed one byte at a time', () => {
        assert.deepEqual(read(chunked(stream, () => 1)).frames, frames);
      });

      it('yields the same frames for random chunkings', () => {
        for (let seed = 1; seed <= 30; seed++) {
          const rnd = seededRandom(seed);
          const max = [3, 17, 100, 5000, 100_000][seed % 5]!;
          const got = read(chunked(stream, () => Math.floor(rnd() * max) + 1));
          assert.deepEqual(got.frames, frames, `seed ${seed}`);
        }
      });
    });
  }

  it('emits nothing until the global header is complete, and nothing for a partial record', () => {
    const stream = pcapStream([Buffer.from('abcdef')], { linkType: 1 });
    const got = read([stream.subarray(0, 23)]);
    assert.equal(got.reader.linkType, undefined);
    got.reader.push(stream.subarray(23, 24 + 16 + 5));
    assert.equal(got.reader.linkType, 'ETHERNET');
    assert.equal(got.frames.length, 0);
    got.reader.push(stream.subarray(24 + 16 + 5));
    assert.deepEqual(got.frames, [Buffer.from('abcdef')]);
  });

  it('handles a stream with no records', () => {
    const got = read([pcapStream([], { linkType: 1 })]);
    assert.equal(got.frames.length, 0);
    assert.equal(got.reader.linkType, 'ETHERNET');
  });

  describe('link types', () => {
    const mapping: [number, LinkType][] = [
      [1, 'ETHERNET'],
      [113, 'LINUX_SLL'],
      [276, 'LINUX_SLL2'],
      [101, 'RAW'],
      [0, 'NULL'],
    ];
    for (const [number, name] of mapping) {
      it(`maps LINKTYPE ${number} to ${name} (both byte orders)`, () => {
        for (const littleEndian of [true, false]) {
          const got = read([pcapStream([Buffer.from([1, 2, 3])], { linkType: number, littleEndian })]);
          assert.equal(got.reader.linkType, name);
          assert.deepEqual(got.linkTypes, [name]);
        }
      });
    }

    it('ignores the FCS bits above the 16-bit link type', () => {
      const got = read([pcapStream([Buffer.from([9])], { linkType: 0x1000_0001 })]);
      assert.equal(got.reader.linkType, 'ETHERNET');
    });

    it('refuses an unsupported link type, naming it', () => {
      for (const linkType of [105, 127, 228, 2]) {
        assert.throws(
          () => read([pcapStream([], { linkType })]),
          (err: unknown) => err instanceof PcapStreamError && err.message === `unsupported link type ${linkType}`,
        );
      }
    });
  });

  it('refuses a stream with a bad magic number (pcapng, text, a swapped nibble)', () => {
    const good = pcapStream([], { linkType: 1 });
    const pcapng = Buffer.from(good);
    pcapng.writeUInt32BE(0x0a0d0d0a, 0);
    const text = Buffer.from('HTTP/1.1 200 OK\r\nServer: x\r\n\r\n');
    const swapped = Buffer.from(good);
    swapped.writeUInt32LE(0xa1b2c3d5, 0);
    for (const bad of [pcapng, text, swapped]) {
      assert.throws(() => read([bad]), (err: unknown) => err instanceof PcapStreamError && /bad magic/.test(err.message));
    }
  });

  it('refuses an implausible record length instead of buffering without bound', () => {
    for (const littleEndian of [true, false]) {
      const stream = pcapStream([Buffer.alloc(4)], { linkType: 1, littleEndian });
      if (littleEndian) stream.writeUInt32LE(0x7fff_ffff, 24 + 8);
      else stream.writeUInt32BE(0x7fff_ffff, 24 + 8);
      // The record header alone is enough to tell: no need to wait for 2 GiB.
      assert.throws(
        () => read([stream.subarray(0, 24 + 16)]),
        (err: unknown) => err instanceof PcapStreamError && /implausible record length 2147483647/.test(err.message),
      );
    }
  });

  it('accepts records up to 256 KiB and refuses one byte more', () => {
    const max = Buffer.alloc(262_144, 7);
    assert.deepEqual(read([pcapStream([max], { linkType: 101 })]).frames, [max]);
    assert.throws(() => read([pcapStream([Buffer.alloc(262_145)], { linkType: 101 })]), PcapStreamError);
  });
});
