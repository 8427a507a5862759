import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Where the old key of a file lives while a rotation overlaps (`nonstop-keygen rotate` until
 * `retire`, services/keygen/rotation.ts): beside the file, under this name. Keygen writes it
 * and every tier that follows a key file reads it through this, so the two cannot disagree.
 */
export const previousOf = (path: string): string => `${path}.previous`;

/**
 * Writes a file only if it does not exist yet, so generated keys, certificates and the
 * database password are created once and never overwritten. Returns false when the file
 * was already there.
 *
 * Crash-safe: the contents are written and synced under a temporary name, then linked to
 * the real name (link fails if it exists), and the directory synced. A power cut leaves
 * either no file or the whole file — never an empty one that a restart would then take as
 * the password (as a plain write did, seen by the power-cut durability test).
 */
export function writeIfAbsent(path: string, contents: string, mode = 0o600): boolean {
  const dir = dirname(path);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, contents);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
  // The new name, and each directory made for it, must be on disk too.
  for (let d = dir; ; d = dirname(d)) {
    syncDir(d);
    if (!created || d === dirname(created) || d === dirname(d)) break;
  }
  return true;
}

/** fsync of a directory: makes the names in it durable. */
export function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces a file whole: written and synced under a temporary name, then renamed over the
 * old one, so a reader (or a crash) sees the old file or the new one, never half of either.
 */
export function replaceFile(path: string, text: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return;
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode, flush: true });
  renameSync(tmp, path);
  syncDir(dirname(path));
}
