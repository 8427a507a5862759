import type { Logger } from '../../common/log/logger';
import { knockSecretsFrom, readKnockSecretTexts } from '../../common/knock/secrets';
import type { KnockSpec } from '../../common/knock/sequence';

/**
 * Which knock secret the broker knocks a gateway with, during a knock-secret rotation
 * (`nonstop-keygen rotate knock-secret`): the secret file and its `.previous` are read at
 * every knock (two small files, once per tunnel set up), so a rotation needs no reload.
 *
 * The new secret first; after a knock with it that did not open the SSH port, the previous
 * one, then back — so the door opens whether or not the gateway has loaded the new secret
 * (keygen writes the gateway's files first, but the gateway polls them). Chosen over
 * knocking both sequences back to back: a sequence the gateway does not know restarts its
 * progress at every SYN, each restart spending a unit of the broker's knock budget there,
 * and a known one opens a second window nobody uses. The fallback costs one failed
 * connect, only in the seconds before the gateway loads the new secret.
 */
export class KnockSecretChooser {
  private fallBack = false;
  private lastRefused: string | undefined;

  constructor(private readonly log: Logger) {}

  /** The spec to knock with now; `previous`: derived from the previous secret. */
  next(spec: KnockSpec, gatewayId: string): { spec: KnockSpec; previous: boolean } {
    if (spec.mode !== 'time' || spec.secretFile === undefined) return { spec, previous: false };
    let secrets: { secret: Buffer; previousSecret?: Buffer };
    try {
      const texts = readKnockSecretTexts(spec.secretFile);
      secrets = knockSecretsFrom('knock.secretFile', spec.secretFile, texts.current, texts.previous);
      this.lastRefused = undefined;
    } catch (err) {
      // Keep knocking with the secret read at start: a rotation half-written is no reason to stop.
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (why !== this.lastRefused) this.log.error('knock secret file cannot be used; knocking with the secret read before', { gateway: gatewayId, path: spec.secretFile, err: why });
      this.lastRefused = why;
      secrets = { secret: spec.secret };
    }
    const previous = this.fallBack && secrets.previousSecret !== undefined;
    if (previous) this.log.info('knocking with the previous knock secret: the last knock with the new one did not open the SSH port', { gateway: gatewayId });
    return { spec: { ...spec, secret: previous ? secrets.previousSecret! : secrets.secret }, previous };
  }

  /** Whether the knock made with next()'s answer opened the SSH port. */
  result(previous: boolean, opened: boolean): void {
    this.fallBack = opened ? previous : !previous;
  }
}
