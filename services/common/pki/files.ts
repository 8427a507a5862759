import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes a file only if it does not exist yet (O_EXCL), so generated keys and certificates
 * are created once and never overwritten. Returns false when the file was already there.
 */
export function writeIfAbsent(path: string, contents: string, mode = 0o600): boolean {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(path, contents, { flag: 'wx', mode });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}
