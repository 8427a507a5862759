import { ConfigError } from '../../common/errors/config-error';
import type { Logger } from '../../common/log/logger';
import { knockSecretsFrom, readKnockSecretTexts } from '../../common/knock/secrets';
import type { TimeSpec } from '../../common/knock/sequence';

/** How often the gateway looks at KNOCK_SECRET_FILE and its `.previous` for changes. */
export const KNOCK_SECRET_POLL_MS = 2000;

/**
 * Follows KNOCK_SECRET_FILE and `<file>.previous` while the gateway runs (`nonstop-keygen
 * rotate knock-secret` writes them): on a change the door takes sequences derived from
 * both secrets, until `retire knock-secret` removes `.previous`. Polled and compared as
 * text, like every followed file here; a current secret that cannot be read or is too
 * short is refused with one log line and the secrets in force kept. Returns the stop.
 */
export function followKnockSecrets(path: string, spec: TimeSpec, apply: (spec: TimeSpec) => void, log: Logger, intervalMs = KNOCK_SECRET_POLL_MS): () => void {
  let last = `${spec.secret.toString('utf8')}\0${spec.previousSecret?.toString('utf8') ?? ''}`;
  let lastRefused: string | undefined;
  const check = (): void => {
    let texts: { current: string; previous: string | undefined };
    let next: Pick<TimeSpec, 'secret' | 'previousSecret'>;
    try {
      texts = readKnockSecretTexts(path);
      next = knockSecretsFrom('KNOCK_SECRET_FILE', path, texts.current, texts.previous);
    } catch (err) {
      const why = err instanceof ConfigError ? err.message : ((err as NodeJS.ErrnoException).code ?? 'unreadable');
      if (why !== lastRefused) log.error('knock secret file changed but cannot be used; keeping the secrets in force', { path, err: why });
      lastRefused = why;
      return;
    }
    lastRefused = undefined;
    const key = `${next.secret.toString('utf8')}\0${next.previousSecret?.toString('utf8') ?? ''}`;
    if (key === last) return;
    last = key;
    log.info('knock secret reloaded', { path, overlap: next.previousSecret !== undefined });
    apply({ ...spec, secret: next.secret, ...(next.previousSecret ? { previousSecret: next.previousSecret } : {}) });
  };
  check();
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
