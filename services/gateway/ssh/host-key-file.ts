import { FollowedFile } from '../../common/config/followed-file';
import type { Logger } from '../../common/log/logger';
import { checkSshPrivateKey, SshPrivateKeyError } from '../../common/ssh/private-key';

/** How often the gateway looks at SSH_HOST_KEY_FILE for changes. */
export const HOST_KEY_POLL_MS = 2000;

/**
 * Follows SSH_HOST_KEY_FILE while the gateway runs: `nonstop-keygen rotate gateway-host-key`
 * puts a new key there (after the brokers' gateways.json pins both old and new), and the
 * gateway presents it to new connections within the poll interval, no restart;
 * connections already open keep the key their broker verified (GatewaySshServer.setHostKey).
 * A file that does not hold a usable private key is refused with one log line naming it,
 * and the key in use is kept. `initial` is the text the gateway started with. Returns the stop.
 */
export function followHostKey(path: string, initial: string, apply: (hostKey: string) => void, log: Logger, intervalMs = HOST_KEY_POLL_MS): () => void {
  const file = new FollowedFile(
    path,
    {
      changed: (text) => {
        let fingerprint: string;
        try {
          fingerprint = checkSshPrivateKey(text);
          apply(text);
        } catch (err) {
          // ssh2's Server refuses what its parser refuses; anything else is a bug, not a bad file.
          if (!(err instanceof SshPrivateKeyError)) throw err;
          log.error('ssh host key file changed but cannot be used; keeping the host key in use', { path, err: err.message });
          return;
        }
        log.info('ssh host key reloaded: new connections get it', { path, fingerprint });
      },
      unreadable: (err) => log.error('ssh host key file cannot be read; keeping the host key in use', { path, err: err.code }),
    },
    initial,
  );
  file.start(intervalMs);
  return () => file.stop();
}
