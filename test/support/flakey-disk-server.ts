/**
 * The block device under test/support/flakey-disk.ts: a FUSE file system, spoken over
 * /dev/fuse directly, that shows one file, `disk`, backed by an image file. A loop device
 * over `disk` gives a real block device, and every write the kernel sends to that device
 * arrives here. While the drop flag file exists, each write is acknowledged and thrown
 * away: device-mapper's flakey target with `drop_writes`, which this kernel lacks (no
 * device-mapper, NBD or ublk; FUSE and loop are built in).
 *
 * The file is opened with FOPEN_DIRECT_IO, so the kernel keeps no page cache for it: what
 * the loop device reads back is what this process stored, never a dropped write.
 *
 * Run as a child process (its blocking reads would stall a test's event loop, and the
 * kernel would wait on them):
 *
 *   node flakey-disk-server.js IMAGE MOUNTPOINT DROP_FLAG_FILE
 *
 * Prints `ready` once mounted and, when the file system is unmounted, one JSON line of
 * counts ({"writes","dropped","flushes"}), then exits.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

const [image, mountpoint, dropFlag] = process.argv.slice(2);
if (!image || !mountpoint || !dropFlag) {
  process.stderr.write('usage: flakey-disk-server IMAGE MOUNTPOINT DROP_FLAG_FILE\n');
  process.exit(2);
}

// Opcodes and flags from <linux/fuse.h> (protocol 7.x).
const OP = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18,
  FSYNC: 20, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, ACCESS: 34, INTERRUPT: 36,
  DESTROY: 38, BATCH_FORGET: 42,
} as const;
const FUSE_BIG_WRITES = 1 << 5;
const FUSE_MAX_PAGES = 1 << 22;
const FOPEN_DIRECT_IO = 1 << 0;
const FATTR_SIZE = 1 << 3;
const ENOENT = 2;
const EPERM = 1;
const ENOSYS = 38;

const IN_HEADER = 40;
const ROOT = 1n;
const DISK = 2n;
const MAX_PAGES = 256;
const MAX_WRITE = MAX_PAGES * 4096;

const dev = openSync('/dev/fuse', 'r+');
const img = openSync(image, 'r+');
const size = BigInt(fstatSync(img).size);

// mount(8) without its helpers (-i): the kernel's fuse takes the /dev/fuse descriptor as
// fd=3 of the mounting process, which is ours passed down.
const mounted = spawnSync('mount', ['-i', '-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0,allow_other', 'nonstop-flakey', mountpoint], {
  stdio: ['ignore', 'inherit', 'inherit', dev],
});
if (mounted.status !== 0) {
  process.stderr.write(`mounting the FUSE file system on ${mountpoint} failed (exit ${mounted.status ?? mounted.signal})\n`);
  process.exit(1);
}

const counts = { writes: 0, dropped: 0, flushes: 0 };

function attr(node: bigint): Buffer {
  const a = Buffer.alloc(88);
  const isRoot = node === ROOT;
  a.writeBigUInt64LE(node, 0);
  a.writeBigUInt64LE(isRoot ? 0n : size, 8);
  a.writeBigUInt64LE(isRoot ? 0n : (size + 511n) / 512n, 16);
  a.writeUInt32LE(isRoot ? 0o040755 : 0o100600, 60);
  a.writeUInt32LE(isRoot ? 2 : 1, 64);
  a.writeUInt32LE(4096, 80);
  return a;
}

function attrOut(node: bigint): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64LE(1n, 0); // attributes valid for 1 s
  return Buffer.concat([head, attr(node)]);
}

function entryOut(node: bigint): Buffer {
  const head = Buffer.alloc(40);
  head.writeBigUInt64LE(node, 0);
  head.writeBigUInt64LE(1n, 16);
  head.writeBigUInt64LE(1n, 24);
  return Buffer.concat([head, attr(node)]);
}

function dirent(ino: bigint, off: bigint, name: string, type: number): Buffer {
  const nameBytes = Buffer.from(name);
  const len = (24 + nameBytes.length + 7) & ~7;
  const d = Buffer.alloc(len);
  d.writeBigUInt64LE(ino, 0);
  d.writeBigUInt64LE(off, 8);
  d.writeUInt32LE(nameBytes.length, 16);
  d.writeUInt32LE(type, 20);
  nameBytes.copy(d, 24);
  return d;
}

function reply(unique: bigint, error: number, payload: Buffer = Buffer.alloc(0)): void {
  const head = Buffer.alloc(16);
  head.writeUInt32LE(16 + payload.length, 0);
  head.writeInt32LE(-error, 4);
  head.writeBigUInt64LE(unique, 8);
  try {
    writeSync(dev, Buffer.concat([head, payload]));
  } catch (err) {
    // ENOENT: the request was interrupted and the kernel no longer waits for it.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function handle(req: Buffer): void {
  const opcode = req.readUInt32LE(4);
  const unique = req.readBigUInt64LE(8);
  const node = req.readBigUInt64LE(16);
  const body = req.subarray(IN_HEADER);
  switch (opcode) {
    case OP.INIT: {
      const out = Buffer.alloc(64);
      out.writeUInt32LE(7, 0);
      out.writeUInt32LE(31, 4);
      out.writeUInt32LE(body.readUInt32LE(8), 8); // max_readahead: as offered
      out.writeUInt32LE(FUSE_BIG_WRITES | FUSE_MAX_PAGES, 12);
      out.writeUInt16LE(16, 16);
      out.writeUInt16LE(12, 18);
      out.writeUInt32LE(MAX_WRITE, 20);
      out.writeUInt32LE(1, 24);
      out.writeUInt16LE(MAX_PAGES, 28);
      return reply(unique, 0, out);
    }
    case OP.LOOKUP: {
      const name = body.subarray(0, body.indexOf(0)).toString();
      return node === ROOT && name === 'disk' ? reply(unique, 0, entryOut(DISK)) : reply(unique, ENOENT);
    }
    case OP.GETATTR:
      return reply(unique, 0, attrOut(node));
    case OP.SETATTR: {
      // Times and modes are accepted and ignored; the device's size is fixed.
      const valid = body.readUInt32LE(0);
      if (valid & FATTR_SIZE && body.readBigUInt64LE(16) !== size) return reply(unique, EPERM);
      return reply(unique, 0, attrOut(node));
    }
    case OP.OPEN: {
      const out = Buffer.alloc(16);
      out.writeBigUInt64LE(1n, 0);
      out.writeUInt32LE(FOPEN_DIRECT_IO, 8);
      return reply(unique, 0, out);
    }
    case OP.OPENDIR:
      return reply(unique, 0, Buffer.alloc(16));
    case OP.READDIR: {
      const offset = body.readBigUInt64LE(8);
      const all = [dirent(ROOT, 1n, '.', 4), dirent(ROOT, 2n, '..', 4), dirent(DISK, 3n, 'disk', 8)];
      return reply(unique, 0, Buffer.concat(all.slice(Number(offset))));
    }
    case OP.READ: {
      const offset = body.readBigUInt64LE(8);
      const want = body.readUInt32LE(16);
      const out = Buffer.alloc(want);
      const n = readSync(img, out, 0, want, offset);
      return reply(unique, 0, out.subarray(0, n));
    }
    case OP.WRITE: {
      const offset = body.readBigUInt64LE(8);
      const length = body.readUInt32LE(16);
      counts.writes++;
      if (existsSync(dropFlag!)) {
        counts.dropped++;
      } else {
        writeSync(img, body, 40, length, Number(offset));
      }
      const out = Buffer.alloc(8);
      out.writeUInt32LE(length, 0);
      return reply(unique, 0, out);
    }
    case OP.FSYNC:
      // What reached this process is on the device; a host crash is not what is simulated.
      counts.flushes++;
      return reply(unique, 0);
    case OP.FLUSH:
    case OP.RELEASE:
    case OP.RELEASEDIR:
    case OP.ACCESS:
      return reply(unique, 0);
    case OP.STATFS: {
      const out = Buffer.alloc(80);
      out.writeUInt32LE(4096, 40);
      out.writeUInt32LE(255, 44);
      out.writeUInt32LE(4096, 48);
      return reply(unique, 0, out);
    }
    case OP.DESTROY:
      return reply(unique, 0);
    case OP.FORGET:
    case OP.BATCH_FORGET:
    case OP.INTERRUPT:
      return; // no reply expected
    default:
      return reply(unique, ENOSYS);
  }
}

process.stdout.write('ready\n');
const buf = Buffer.alloc(MAX_WRITE + 64 * 1024);
for (;;) {
  let n: number;
  try {
    n = readSync(dev, buf, 0, buf.length, null);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENODEV') break; // unmounted
    if (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT') continue;
    throw err;
  }
  handle(buf.subarray(0, n));
}
closeSync(img);
process.stdout.write(`${JSON.stringify(counts)}\n`);
