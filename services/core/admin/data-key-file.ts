import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../../common/errors/config-error';
import { formatDataKeyFile, type DataKeySet } from '../../common/pki/data-key-file';
import { syncDir } from '../../common/pki/files';
import { readDataKeyFile } from '../storage/data-keys';

/** Refused: another key command holds the lock. */
export class KeyFileBusyError extends Error {
  constructor(lockPath: string) {
    super(`another nonstop-admin keys command is changing the key file (${lockPath} exists; remove it if none is running)`);
    this.name = 'KeyFileBusyError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

function notWritable(path: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new ConfigError([
    `CORE_DATA_KEYS_FILE=${JSON.stringify(path)}: cannot write (${code}); core mounts its keys read-only, so key commands run in a container that mounts them writable (README, "Rotating the data key")`,
  ]);
}

/**
 * nonstop-admin's side of CORE_DATA_KEYS_FILE. Every change is a whole new file written,
 * synced and renamed over the old one, so core (which polls it) reads either the old set or
 * the new, never half of one; and it happens under a lock file beside it, so two key
 * commands cannot each add a key to the set they read and lose the other's. Losing a key
 * loses the records wrapped under it: the lock is not optional.
 */
export class DataKeyFile {
  constructor(readonly path: string) {}

  read(): DataKeySet {
    return readDataKeyFile(this.path).set;
  }

  /** Runs `fn` holding the lock; a stale lock (a crashed command) must be removed by hand. */
  async locked<T>(fn: () => T | Promise<T>): Promise<T> {
    const lock = `${this.path}.lock`;
    let fd: number;
    try {
      fd = openSync(lock, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileBusyError(lock);
      throw notWritable(this.path, err);
    }
    closeSync(fd);
    try {
      return await fn();
    } finally {
      unlinkSync(lock);
    }
  }

  write(set: DataKeySet): void {
    const tmp = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    let fd: number;
    try {
      fd = openSync(tmp, 'wx', 0o600);
    } catch (err) {
      throw notWritable(this.path, err);
    }
    try {
      writeSync(fd, formatDataKeyFile(set));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, this.path);
    } catch (err) {
      unlinkSync(tmp);
      throw notWritable(this.path, err);
    }
    syncDir(dirname(this.path));
  }
}
