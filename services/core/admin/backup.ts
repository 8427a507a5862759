import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Db } from 'mongodb';
import { syncDir } from '../../common/pki/files';
import { restoreBackup, type InsertOutcome } from '../backup/restore';
import { writeBackup, type BackupSink } from '../backup/snapshot';
import { verifyBackup } from '../backup/format';
import { DataKeyRing, readDataKeyFile } from '../storage/data-keys';
import { UsageError, parseFlags } from './args';

/**
 * `nonstop-admin backup` and `nonstop-admin restore`: core's tokens and records to a file
 * and back (services/core/backup/). Both only read the key file (core mounts it read-only),
 * so they run inside core: `docker compose exec -T core nonstop-admin backup > FILE` and
 * `docker compose exec -T core nonstop-admin restore < FILE`.
 *
 *   backup [--out FILE]              to stdout, or to FILE, which appears only once complete
 *   restore [--in FILE] [--merge]    from stdin or FILE, verified whole before anything is written
 *   restore ... --check              verify only: says whether this core could restore it
 *
 * What goes to stderr is counts, times, key ids and ids: never a token or a record's content.
 */

/** A refusal or work left undone: exit 1, with the reason on stderr. */
export const EXIT_REFUSED = 1;

export interface BackupArgs {
  out?: string;
}

export interface RestoreArgs {
  in?: string;
  merge: boolean;
  check: boolean;
}

export function parseBackupArgs(args: string[]): BackupArgs {
  const flags = parseFlags(args);
  for (const name of flags.keys()) if (name !== 'out') throw new UsageError(`backup does not take --${name}`);
  const out = flags.get('out');
  return out !== undefined ? { out } : {};
}

export function parseRestoreArgs(args: string[]): RestoreArgs {
  const merge = args.includes('--merge');
  const check = args.includes('--check');
  const flags = parseFlags(args.filter((a) => a !== '--merge' && a !== '--check'));
  for (const name of flags.keys()) if (name !== 'in') throw new UsageError(`restore does not take --${name}`);
  const input = flags.get('in');
  return { merge, check, ...(input !== undefined ? { in: input } : {}) };
}

/** stdout, for `docker exec ... > FILE`; each write waits until the pipe took it. */
function stdoutSink(): BackupSink {
  return {
    write: (bytes) => new Promise<void>((resolve, reject) => process.stdout.write(bytes, (err) => (err ? reject(err) : resolve()))),
  };
}

/**
 * A file written under a temporary name beside FILE, synced, and linked to FILE only when
 * complete (a link, unlike a rename, refuses to replace an existing FILE: an earlier backup
 * is never overwritten). On failure the temporary file is removed.
 */
class FileSink implements BackupSink {
  private readonly tmp: string;
  private readonly fd: number;

  constructor(readonly path: string) {
    this.tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.partial`);
    this.fd = openSync(this.tmp, 'wx', 0o600);
  }

  write(bytes: Buffer): Promise<void> {
    writeSync(this.fd, bytes);
    return Promise.resolve();
  }

  commit(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    try {
      linkSync(this.tmp, this.path);
    } finally {
      unlinkSync(this.tmp);
    }
    syncDir(dirname(this.path));
  }

  discard(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed by a failed commit
    }
    try {
      unlinkSync(this.tmp);
    } catch {
      // already removed by a failed commit
    }
  }
}

export async function backupCommand(args: string[], db: Db, keysFile: string): Promise<number> {
  const { out } = parseBackupArgs(args);
  if (out === undefined && process.stdout.isTTY) throw new UsageError('backup writes to stdout: redirect it to a file (docker compose exec -T core nonstop-admin backup > FILE) or give --out FILE');
  const keys = DataKeyRing.of(readDataKeyFile(keysFile).set);
  const file = out !== undefined ? new FileSink(out) : undefined;
  let summary;
  try {
    summary = await writeBackup(db, keys, file ?? stdoutSink());
    file?.commit();
  } catch (err) {
    file?.discard();
    throw err;
  }
  process.stderr.write(
    `backup of ${summary.records} records and ${summary.tokens} tokens as of ${summary.startedAt.toISOString()} (records under keys: ${summary.keyIds.join(', ') || 'none'}), sha256 ${summary.sha256}, written to ${out ?? 'stdout'}\n`,
  );
  return 0;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function describe(what: string, o: InsertOutcome): string {
  return `${o.inserted} ${what} restored${o.alreadyThere > 0 ? `, ${o.alreadyThere} already there` : ''}${o.differing.length > 0 ? `, ${o.differing.length} kept as this core holds them` : ''}`;
}

export async function restoreCommand(args: string[], db: Db, keysFile: string): Promise<number> {
  const opts = parseRestoreArgs(args);
  if (opts.in === undefined && process.stdin.isTTY) throw new UsageError('restore reads the backup from stdin (docker compose exec -T core nonstop-admin restore < FILE) or from --in FILE');
  const keys = DataKeyRing.of(readDataKeyFile(keysFile).set);
  // The whole file is read and verified before the database is touched: a damaged or
  // foreign file changes nothing. It is held in memory meanwhile.
  const bytes = opts.in !== undefined ? readFileSync(opts.in) : await readStdin();
  const backup = verifyBackup(bytes, keys);
  const about = `backup of ${backup.header.startedAt} (${backup.records.length} records, ${backup.tokens.length} tokens, records under keys: ${backup.trailer.keyIds.join(', ') || 'none'})`;
  if (opts.check) {
    process.stderr.write(`verified ${about}: complete, undamaged, written with this key file's keys; nothing restored (--check)\n`);
    return 0;
  }
  const result = await restoreBackup(db, backup, { merge: opts.merge });
  process.stderr.write(`restored ${about}: ${describe('records', result.records)}; ${describe('tokens', result.tokens)}\n`);
  const differing = [...result.records.differing, ...result.tokens.differing];
  if (differing.length > 0) {
    process.stderr.write(`nonstop-admin: ${differing.length} ids of the backup hold other content in this core and were left as they are: ${differing.slice(0, 20).join(', ')}${differing.length > 20 ? ', ...' : ''}\n`);
    return EXIT_REFUSED;
  }
  return 0;
}
