import { readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import { DataKeyFileError, parseDataKeyFile, type DataKeySet } from '../../common/pki/data-key-file';
import type { Logger } from '../../common/log/logger';

/** How often core re-reads its key file: a rotated-in key is used for new records within this. */
export const DATA_KEYS_POLL_MS = 1000;

/** What sealing and opening a record need: the key that wraps new data keys, and any key by id. */
export interface KeyLookup {
  active(): { id: string; key: Buffer };
  key(id: string): Buffer | undefined;
}

/** Reads and checks the key file; every problem is a ConfigError naming CORE_DATA_KEYS_FILE. */
export function readDataKeyFile(path: string): { text: string; set: DataKeySet } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`CORE_DATA_KEYS_FILE=${JSON.stringify(path)}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  try {
    return { text, set: parseDataKeyFile(text) };
  } catch (err) {
    if (err instanceof DataKeyFileError) throw new ConfigError([`CORE_DATA_KEYS_FILE=${JSON.stringify(path)}: ${err.message}`]);
    throw err;
  }
}

/**
 * Core's key-encryption keys, from CORE_DATA_KEYS_FILE. The file is polled and compared by
 * text (as client-identity.ts does, for the same reason: fs.watchFile misses a change that
 * lands before its first stat), so a key that nonstop-admin rotates in is used for new
 * records without a restart. A change that cannot be used is logged and the last good set
 * kept: a half-edited file must not take away the keys records are wrapped under.
 */
export class DataKeyRing implements KeyLookup {
  private constructor(
    private readonly path: string | undefined,
    private text: string,
    private set: DataKeySet,
    private readonly log: Logger | undefined,
  ) {}

  static load(path: string, log: Logger): DataKeyRing {
    const { text, set } = readDataKeyFile(path);
    return new DataKeyRing(path, text, set, log);
  }

  /** A fixed set, not backed by a file (benchmarks, unit tests). */
  static of(set: DataKeySet): DataKeyRing {
    return new DataKeyRing(undefined, '', set, undefined);
  }

  active(): { id: string; key: Buffer } {
    return { id: this.set.active, key: this.set.keys.get(this.set.active)! };
  }

  key(id: string): Buffer | undefined {
    return this.set.keys.get(id);
  }

  ids(): string[] {
    return [...this.set.keys.keys()];
  }

  /** Re-reads the file; returns whether it changed and took effect. */
  reload(): boolean {
    if (this.path === undefined) return false;
    let next: { text: string; set: DataKeySet };
    try {
      next = readDataKeyFile(this.path);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      this.log?.error('data key file changed but cannot be used; keeping the previous keys', { problems });
      return false;
    }
    if (next.text === this.text) return false;
    const dropped = this.ids().filter((id) => !next.set.keys.has(id));
    this.text = next.text;
    this.set = next.set;
    this.log?.info('data keys reloaded', { active: next.set.active, keys: this.ids(), dropped });
    return true;
  }
}
