import { readFileSync } from 'node:fs';

/** What a FollowedFile reports: the file's new text, or why it cannot be read now. */
export interface FollowedFileEvents {
  /** The text differs from the last text reported (or it is the first read). */
  changed(text: string): void;
  /** The file cannot be read; reported once per error code until it can be read again. */
  unreadable(err: NodeJS.ErrnoException): void;
}

/**
 * A configuration file a service follows while it runs: read on a timer and compared as
 * text, which works on bind mounts, volumes and Kubernetes' symlinked ConfigMaps alike,
 * where inotify may not. Not fs.watch/fs.watchFile: fs.watchFile reports a change only when
 * a stat differs from the one it takes when it starts, asynchronously, so a rewrite that
 * lands before that first stat was never seen until the next one (seen in this project
 * with the gateway's authorized_keys). The files followed are small.
 *
 * Each text is reported once: a consumer that refuses a text (it does not parse) is not
 * told about it again on every tick, only when the file changes again; `forget()` makes
 * the next check report the current text even if unchanged (a consumer whose apply failed
 * for a reason outside the file, to be retried). The first check reports whatever the
 * file holds, unless `initial` is the text the service already started from.
 */
export class FollowedFile {
  private last: string | undefined;
  private lastErrorCode: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly events: FollowedFileEvents,
    initial?: string,
  ) {
    this.last = initial;
  }

  /** Checks every `intervalMs` until stop(); the timer does not keep the process alive. */
  start(intervalMs: number): void {
    this.stop();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  forget(): void {
    this.last = undefined;
    this.lastErrorCode = undefined;
  }

  /** Reads the file now; reports a change or a new read error. */
  check(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const code = e.code ?? 'unknown';
      if (code !== this.lastErrorCode) {
        this.lastErrorCode = code;
        this.events.unreadable(e);
      }
      return;
    }
    this.lastErrorCode = undefined;
    if (text === this.last) return;
    this.last = text;
    this.events.changed(text);
  }
}
