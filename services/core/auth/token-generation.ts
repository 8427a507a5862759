import { closeSync, constants, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { TokenChangeNotSignalledError } from './change-not-signalled-error';

/** The generation file's name in RUN_DIR. */
export const TOKEN_GENERATION_FILE = 'token-generation';

export function tokenGenerationPath(runDir: string): string {
  return join(runDir, TOKEN_GENERATION_FILE);
}

interface Seen {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/**
 * How a token change reaches core's grant cache before the next request: a generation
 * counter kept as the length of a file on the core container's tmpfs (RUN_DIR,
 * /run/nonstop), which the service and `docker compose exec core nonstop-admin` share, as
 * they share the database on loopback. The admin tool appends one byte after each change
 * it writes to the database; the service stats the file on every request and starts a new
 * epoch of its cache whenever what it sees differs from its last look. stat is synchronous
 * and costs about 2 µs here, against a database round trip of several hundred; once the
 * admin tool has returned, the very next request sees the new length.
 *
 * Chosen over the alternatives:
 * - a generation document in the database: reading it on each request is itself the round
 *   trip the cache saves, and polling it would leave a window (FerretDB v1 has no change
 *   streams to watch it with);
 * - a signal, or inotify (fs.watch), from the admin tool: both arrive as events on the
 *   service's loop, in no fixed order with a request already waiting on its socket, so
 *   "revoked" would mean "soon" rather than "on the next request", unless the tool waited
 *   for an answer from every process.
 *
 * The length only grows while the file lives (one byte per change; the tmpfs goes with the
 * container, whose 16 MiB bound the file would need millions of changes to reach); device,
 * inode and times are compared too, so a file replaced or rewritten also moves the epoch.
 * A file the service cannot stat gives no epoch, and the caller then reads the database.
 */
export class TokenGeneration {
  private seen: Seen | undefined;
  private epochs = 0;

  constructor(readonly path: string) {}

  /**
   * Service side, at start: makes sure the file exists, keeping what is in it. The admin
   * tool never creates it, so a file missing there means no service is told (see bump).
   */
  create(): void {
    closeSync(openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600));
  }

  /** Service side: a number that changes whenever the file does; undefined when it cannot be read. */
  epoch(): number | undefined {
    let st;
    try {
      st = statSync(this.path, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (st === undefined) {
      this.seen = undefined;
      return undefined;
    }
    const seen = this.seen;
    if (seen === undefined || st.size !== seen.size || st.ino !== seen.ino || st.dev !== seen.dev || st.mtimeMs !== seen.mtimeMs || st.ctimeMs !== seen.ctimeMs) {
      this.seen = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
      this.epochs++;
    }
    return this.epochs;
  }

  /**
   * Admin side, after a change is written to the database: one more generation. The file
   * must already exist (the service made it): when it does not, this process does not share
   * the service's RUN_DIR (another container, a wrong RUN_DIR), and creating it would tell
   * no one.
   */
  bump(): void {
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND);
    } catch (err) {
      throw new TokenChangeNotSignalledError(this.path, { cause: err });
    }
    try {
      writeSync(fd, '+');
    } catch (err) {
      throw new TokenChangeNotSignalledError(this.path, { cause: err });
    } finally {
      closeSync(fd);
    }
  }
}
