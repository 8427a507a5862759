import { readFileSync } from 'node:fs';
import type { Logger } from '../../common/log/logger';
import { parseAuthorizedKeys, type AuthorizedKey } from './authorized-keys';

/** How often the gateway looks at SSH_AUTHORIZED_KEYS_FILE for changes. */
export const AUTHORIZED_KEYS_POLL_MS = 2000;

/**
 * Follows SSH_AUTHORIZED_KEYS_FILE while the gateway runs, as sshd reads authorized_keys
 * afresh at every login: keygen rewrites it when a broker is added or revoked, and the
 * gateway takes the new list within the poll interval, no restart. A file that no longer
 * parses (a hand edit gone wrong; keygen replaces it whole) is logged and the last good
 * list kept; one that parses to no key is applied, with a warning: every broker revoked
 * means none may log in. Polled by reading the file and comparing its text, which works on
 * bind mounts and volumes where inotify may not. Not fs.watchFile: it reports a change only
 * when a stat differs from the one it takes when it starts, asynchronously, so a rewrite that
 * lands before that first stat (keygen replacing the file as the gateway starts) was never
 * seen until the next one. The file is a few lines. Returns the stop.
 */
export function followAuthorizedKeys(path: string, apply: (keys: readonly AuthorizedKey[]) => void, log: Logger, intervalMs = AUTHORIZED_KEYS_POLL_MS): () => void {
  let last: string | undefined;
  try {
    last = readFileSync(path, 'utf8');
  } catch {
    last = undefined;
  }
  const check = (): void => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      log.error('authorized_keys cannot be read; keeping the previous keys', { path, err: (err as NodeJS.ErrnoException).code });
      return;
    }
    if (text === last) return;
    let keys: AuthorizedKey[];
    try {
      keys = parseAuthorizedKeys(text);
    } catch (err) {
      log.error('authorized_keys changed but cannot be used; keeping the previous keys', { path, err: (err as Error).message });
      return;
    }
    last = text;
    if (keys.length === 0) log.warn('authorized_keys reloaded: it holds no broker key, so no broker can log in', { path });
    else log.info('authorized_keys reloaded', { path, brokers: keys.map((k) => k.comment) });
    apply(keys);
  };
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
