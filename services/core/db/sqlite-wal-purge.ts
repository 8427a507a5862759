import { existsSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '../../common/lifecycle/backoff';
import type { Logger } from '../../common/log/logger';

/** The purge was stopped (core is shutting down) before a checkpoint completed. */
export class WalPurgeStoppedError extends Error {
  constructor() {
    super('the write-ahead log purge was stopped before it completed');
    this.name = 'WalPurgeStoppedError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** How often a failed attempt is logged at most: a busy database is retried every few ms. */
const LOG_EVERY_MS = 10_000;

/**
 * Makes FerretDB's SQLite write-ahead log give up every copy of an erased record. With
 * secure_delete=ON (db/engine.ts) a delete overwrites the record's bytes with zeros in the
 * page it writes; the WAL still holds the page images written before it (the insert's,
 * every later change to those pages), and the database file the ones last checkpointed.
 * `PRAGMA wal_checkpoint(TRUNCATE)` copies every frame into the database file (so the
 * file's pages become the zeroed ones) and truncates the WAL to zero bytes, which no
 * checkpoint FerretDB or SQLite runs by itself does (theirs only rewind the WAL, leaving
 * old frames in place until overwritten).
 *
 * Core runs it from its own SQLite connection to FerretDB's file (SQLite's locking makes
 * the two processes safe together), with no busy wait: the call is synchronous, so it
 * never blocks core's event loop on FerretDB's locks; a busy database is retried with
 * backoff until a checkpoint completes. Requests arriving while one runs share the next,
 * which starts after it: every caller's erase committed before the checkpoint that
 * resolves it began. `pending` is true from the first request until a checkpoint has
 * completed, and at start (a crash between an erase and its checkpoint leaves the WAL
 * holding the record).
 */
export class SqliteWalPurge {
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private stopped = false;
  private owed = true;
  private lastLogged = -Infinity;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  /** True until a checkpoint has completed since the last erase (or since start). */
  get pending(): boolean {
    return this.owed || this.next !== undefined || this.current !== undefined;
  }

  /** Resolves when a checkpoint that began after this call completed; rejects only when stopped. */
  purge(): Promise<void> {
    this.owed = true;
    if (this.next) return this.next;
    const before = this.current ?? Promise.resolve();
    const run: Promise<void> = before
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        this.current = run;
        return this.untilCheckpointed();
      })
      .finally(() => {
        if (this.current === run) this.current = undefined;
      });
    this.next = run;
    return run;
  }

  /** Stops retrying; a purge still waiting rejects with WalPurgeStoppedError. */
  stop(): void {
    this.stopped = true;
  }

  private async untilCheckpointed(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new WalPurgeStoppedError();
      if (this.checkpoint()) {
        // A purge requested during this one keeps `owed` through `next`.
        if (!this.next) this.owed = false;
        return;
      }
      await sleep(backoffDelay({ baseMs: 5, capMs: 500, minMs: 2 }, Math.min(attempt, 20)));
    }
  }

  /** One TRUNCATE checkpoint; true when it completed (the WAL is empty). */
  private checkpoint(): boolean {
    // No file, no WAL: FerretDB creates it with the first collection (RecordStore.init).
    // Opening it here would create an empty database instead.
    if (!existsSync(this.file)) return true;
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(this.file, { timeout: 0 });
      const row = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy?: unknown } | undefined;
      if (row?.busy === 0) return true;
      this.note('busy');
      return false;
    } catch (err) {
      this.note((err as { code?: unknown }).code === 'ERR_SQLITE_ERROR' ? `sqlite: ${(err as Error).message}` : (err as Error).message);
      return false;
    } finally {
      db?.close();
    }
  }

  private note(reason: string): void {
    const now = performance.now();
    if (now - this.lastLogged < LOG_EVERY_MS) return;
    this.lastLogged = now;
    this.log.warn('write-ahead log purge retrying', { reason });
  }
}
