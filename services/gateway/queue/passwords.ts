import { EventEmitter } from 'node:events';
import { ConfigError } from '../../common/errors/config-error';
import { FollowedFile } from '../../common/config/followed-file';
import type { Logger } from '../../common/log/logger';
import { previousOf } from '../../common/pki/files';

/** How often the gateway looks at QUEUE_PASSWORD_FILE and its `.previous` for changes. */
export const QUEUE_PASSWORD_POLL_MS = 2000;

/**
 * The passwords to AUTH with, best first, from the texts of QUEUE_PASSWORD_FILE and of
 * `<QUEUE_PASSWORD_FILE>.previous` (undefined: absent, no rotation in progress). Pure.
 * Throws ConfigError when the current file is empty: the gateway keeps what it had.
 */
export function passwordsFrom(path: string, current: string, previous: string | undefined): string[] {
  const now = current.trim();
  if (now === '') throw new ConfigError([`QUEUE_PASSWORD_FILE=${JSON.stringify(path)}: file is empty`]);
  const old = previous?.trim();
  // An empty or identical `.previous` adds nothing to try.
  return old === undefined || old === '' || old === now ? [now] : [now, old];
}

/**
 * The gateway's queue passwords while it runs: QUEUE_PASSWORD_FILE holds the one to use,
 * `<file>.previous` (present only during a rotation's overlap, `nonstop-keygen rotate
 * queue-password`) the one it replaces. A lane AUTHs with the current password first and
 * falls back to the previous one when the broker refuses it (WRONGPASS: that broker has not
 * loaded the new gateways.json yet), and on 'changed' moves its open connections to the
 * new current password, so that `retire queue-password` finds none still on the old one.
 * Both files are polled and compared as text (FollowedFile); a current file that becomes
 * empty or unreadable is refused with one log line and the passwords kept.
 */
export class QueuePasswords extends EventEmitter<{ changed: [] }> {
  private passwords: readonly string[];
  private readonly currentFile: FollowedFile;
  private readonly previousFile: FollowedFile;
  private currentText: string | undefined;
  private previousText: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    initial: readonly string[],
    private readonly log: Logger,
  ) {
    super();
    this.passwords = initial;
    this.currentFile = new FollowedFile(path, {
      changed: (text) => {
        this.currentText = text;
      },
      unreadable: (err) => {
        this.currentText = undefined;
        log.error('queue password file cannot be read; keeping the passwords in use', { path, err: err.code });
      },
    });
    this.previousFile = new FollowedFile(previousOf(path), {
      changed: (text) => {
        this.previousText = text;
      },
      unreadable: (err) => {
        this.previousText = undefined;
        if (err.code !== 'ENOENT') log.error('previous queue password file cannot be read; ignoring it', { path: previousOf(path), err: err.code });
      },
    });
  }

  /** A fixed password that never changes (tests, tools). */
  static fixed(password: string, log: Logger): QueuePasswords {
    return new QueuePasswords('(fixed)', [password], log);
  }

  /** The passwords to try, the current one first. */
  list(): readonly string[] {
    return this.passwords;
  }

  /** Reads both files now; emits 'changed' when the passwords differ. */
  check(): void {
    this.currentFile.check();
    this.previousFile.check();
    if (this.currentText === undefined) return;
    let next: string[];
    try {
      next = passwordsFrom(this.path, this.currentText, this.previousText);
    } catch (err) {
      // Reported once per text: the followed file reports a text only when it changes.
      if (err instanceof ConfigError) {
        this.log.error('queue password file changed but cannot be used; keeping the passwords in use', { path: this.path, err: err.message });
        this.currentText = undefined;
        return;
      }
      throw err;
    }
    if (next.length === this.passwords.length && next.every((p, i) => p === this.passwords[i])) return;
    this.passwords = next;
    this.log.info('queue password reloaded', { path: this.path, overlap: next.length > 1 });
    this.emit('changed');
  }

  start(intervalMs = QUEUE_PASSWORD_POLL_MS): void {
    this.stop();
    this.check();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
