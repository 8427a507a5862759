import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { requireBinary } from './binaries';
import { tempDir } from './tmp';

const run = promisify(execFile);

/** What the device saw between two power cycles. */
export interface DiskCounts {
  /** Writes that reached the device. */
  writes: number;
  /** Of those, the ones acknowledged and thrown away because writes were being dropped. */
  dropped: number;
  /** Cache flushes (what fsync turns into at the device). */
  flushes: number;
}

/**
 * A disk that can lose power: an ext4 file system on a loop device whose writes, from a
 * moment the test picks, are acknowledged and thrown away — what xfstests does with
 * device-mapper's flakey target (`drop_writes`) to prove a file system or a database
 * synced what it acknowledged. This kernel has no device-mapper (nor NBD or ublk), so
 * the dropping is done under the loop device by flakey-disk-server, a FUSE file system
 * that holds the disk image.
 *
 * Everything above the device is real: the page cache, ext4's journal, fsync. Data that a
 * program wrote but never synced is still only in the page cache when writes start being
 * dropped, and is gone after powerCycle(); data synced before dropWrites() survives it.
 *
 * Needs root, /dev/fuse, losetup and mount (Debian package mount) and mkfs.ext4
 * (e2fsprogs); a missing piece fails create() with what is missing, never skips.
 */
export class FlakeyDisk {
  /** Where the file system is mounted. */
  readonly dir: string;
  private readonly image: string;
  private readonly fuseDir: string;
  private readonly dropFlag: string;
  private server: { child: ChildProcess; exited: Promise<DiskCounts | undefined> } | undefined;
  private loopDevice: string | undefined;
  private mounted = false;
  private destroyed: Promise<void> | undefined;

  private constructor(private readonly tmp: { dir: string; cleanup: () => void }) {
    this.image = join(tmp.dir, 'disk.img');
    this.fuseDir = join(tmp.dir, 'device');
    this.dir = join(tmp.dir, 'fs');
    this.dropFlag = join(tmp.dir, 'drop-writes');
  }

  /** Makes an ext4 image of `sizeMiB` and mounts it at `dir`. */
  static async create(opts: { sizeMiB?: number } = {}): Promise<FlakeyDisk> {
    if (process.getuid?.() !== 0) throw new Error('FlakeyDisk needs root (loop devices, mount)');
    if (!existsSync('/dev/fuse')) throw new Error('FlakeyDisk needs /dev/fuse (a kernel with FUSE)');
    if (!existsSync('/dev/loop-control')) throw new Error('FlakeyDisk needs loop devices (/dev/loop-control)');
    const mkfs = requireBinary('e2fsprogs', '/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4');
    requireBinary('mount', '/usr/sbin/losetup', '/sbin/losetup');
    requireBinary('mount', '/usr/bin/mount', '/bin/mount');
    const disk = new FlakeyDisk(tempDir('nonstop-flakey-disk-'));
    try {
      mkdirSync(disk.fuseDir);
      mkdirSync(disk.dir);
      writeFileSync(disk.image, '');
      truncateSync(disk.image, (opts.sizeMiB ?? 256) * 1024 * 1024);
      // Inode tables and journal written now, not by a background thread after mount;
      // no discard (the device does not take it).
      await run(mkfs, ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', disk.image]);
      await disk.attach();
    } catch (err) {
      await disk.destroy();
      throw err;
    }
    return disk;
  }

  /** From now on every write that reaches the device is acknowledged and discarded. */
  dropWrites(): void {
    writeFileSync(this.dropFlag, '');
  }

  /**
   * Pulls the plug and powers up again: unmounts (what the unmount writes is dropped too,
   * if writes are being dropped), detaches the device, restarts it storing writes again,
   * and mounts the file system, which replays its journal. Every process using files on
   * the disk must have exited. Returns what the device saw before the cut.
   */
  async powerCycle(): Promise<DiskCounts> {
    const counts = await this.detach();
    if (!counts) throw new Error('FlakeyDisk: the device server exited without its counts');
    if (existsSync(this.dropFlag)) unlinkSync(this.dropFlag);
    await this.attach();
    return counts;
  }

  /** Unmounts and removes everything; safe to call twice and after a failed create(). */
  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      let failure: Error | undefined;
      try {
        await this.detach(true);
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err));
      }
      // Removing the directory while something is still mounted under it would delete
      // the mounted files' contents: leave it, and say so.
      const left = mountsUnder(this.tmp.dir);
      if (left.length === 0) this.tmp.cleanup();
      else failure ??= new Error(`FlakeyDisk: still mounted: ${left.join(', ')}`);
      if (failure) throw failure;
    })();
    return this.destroyed;
  }

  private async attach(): Promise<void> {
    await this.startServer();
    const { stdout } = await run('losetup', ['--find', '--show', join(this.fuseDir, 'disk')]);
    this.loopDevice = stdout.trim();
    await run('mount', ['-t', 'ext4', this.loopDevice, this.dir]);
    this.mounted = true;
  }

  private async detach(force = false): Promise<DiskCounts | undefined> {
    const problems: string[] = [];
    if (this.mounted) {
      try {
        await run('umount', [this.dir]);
      } catch (err) {
        if (!force) throw new Error(`unmounting ${this.dir} failed (is a process still using it?): ${(err as Error).message}`);
        problems.push(`umount ${this.dir}: ${(err as Error).message}`);
        await run('umount', ['-l', this.dir]).catch((e: Error) => problems.push(`umount -l ${this.dir}: ${e.message}`));
      }
      this.mounted = false;
    }
    if (this.loopDevice) {
      const dev = this.loopDevice;
      await run('losetup', ['-d', dev]).catch((e: Error) => problems.push(`losetup -d ${dev}: ${e.message}`));
      // The device lets go of its backing file asynchronously; the FUSE mount stays busy
      // until it has.
      const backing = `/sys/block/${dev.replace('/dev/', '')}/loop/backing_file`;
      const until = Date.now() + 10_000;
      while (existsSync(backing) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      if (existsSync(backing)) problems.push(`${dev} still attached`);
      this.loopDevice = undefined;
    }
    let counts: DiskCounts | undefined;
    if (this.server) {
      const server = this.server;
      this.server = undefined;
      await run('umount', [this.fuseDir]).catch(async (e: Error) => {
        problems.push(`umount ${this.fuseDir}: ${e.message}`);
        server.child.kill('SIGKILL');
        await run('umount', ['-l', this.fuseDir]).catch(() => undefined);
      });
      const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
      counts = await server.exited;
      clearTimeout(timer);
    }
    if (problems.length > 0) throw new Error(`FlakeyDisk: ${problems.join('; ')}`);
    return counts;
  }

  private async startServer(): Promise<void> {
    const child = spawn(process.execPath, [join(__dirname, 'flakey-disk-server.js'), this.image, this.fuseDir, this.dropFlag], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        lines.push(line);
        if (line === 'ready') resolve();
      });
      child.once('exit', (code, signal) => reject(new Error(`flakey-disk-server exited (${code ?? signal}) before mounting: ${stderr.trim()}`)));
    });
    const exited = new Promise<DiskCounts | undefined>((resolve) => {
      child.once('exit', () => {
        const last = lines.at(-1);
        resolve(last?.startsWith('{') ? (JSON.parse(last) as DiskCounts) : undefined);
      });
    });
    this.server = { child, exited };
    await ready;
  }
}

/** Mount points at or below `dir`, from /proc/self/mountinfo. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}
