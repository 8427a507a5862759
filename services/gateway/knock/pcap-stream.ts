import type { LinkType } from './packet';

/**
 * Incremental reader of the classic pcap stream format (what `tcpdump -w -` writes):
 * a 24-byte global header, then per packet a 16-byte record header and the captured bytes.
 * Feed it chunks as they arrive from the pipe; it calls `onFrame` for each complete frame.
 * Pure; copes with any chunking and both byte orders.
 */
const LINK_TYPES: Record<number, LinkType> = { 0: 'NULL', 1: 'ETHERNET', 101: 'RAW', 113: 'LINUX_SLL', 276: 'LINUX_SLL2' };

export class PcapStreamError extends Error {}

export class PcapStreamReader {
  private buffer: Buffer = Buffer.alloc(0);
  private littleEndian: boolean | undefined;
  linkType: LinkType | undefined;
  frames = 0;

  constructor(private readonly onFrame: (frame: Buffer, linkType: LinkType) => void) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let offset = 0;
    if (this.littleEndian === undefined) {
      if (this.buffer.length < 24) return;
      const magicLE = this.buffer.readUInt32LE(0);
      if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) this.littleEndian = true;
      else if (this.buffer.readUInt32BE(0) === 0xa1b2c3d4 || this.buffer.readUInt32BE(0) === 0xa1b23c4d) this.littleEndian = false;
      else throw new PcapStreamError('not a pcap stream (bad magic number)');
      const link = (this.littleEndian ? this.buffer.readUInt32LE(20) : this.buffer.readUInt32BE(20)) & 0xffff;
      const linkType = LINK_TYPES[link];
      if (!linkType) throw new PcapStreamError(`unsupported link type ${link}`);
      this.linkType = linkType;
      offset = 24;
    }
    const le = this.littleEndian;
    const linkType = this.linkType!;
    while (this.buffer.length - offset >= 16) {
      const captured = le ? this.buffer.readUInt32LE(offset + 8) : this.buffer.readUInt32BE(offset + 8);
      if (captured > 262_144) throw new PcapStreamError(`implausible record length ${captured}`);
      if (this.buffer.length - offset - 16 < captured) break;
      this.frames++;
      this.onFrame(this.buffer.subarray(offset + 16, offset + 16 + captured), linkType);
      offset += 16 + captured;
    }
    this.buffer = offset === this.buffer.length ? Buffer.alloc(0) : Buffer.from(this.buffer.subarray(offset));
  }
}
