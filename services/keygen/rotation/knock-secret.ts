import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import { previousOf, replaceFile } from '../../common/pki/files';
import { noArguments, refuseDuringOverlap, refuseWithoutOverlap, registerRotation, removePrevious, type RotationContext } from '../rotation';

/**
 * `nonstop-keygen rotate knock-secret` / `retire knock-secret`: the secret time-based knocks
 * of the gateway (GATEWAY_ID, KEYGEN_GATEWAY_SUBDIR) are derived from, held by the gateway
 * (knock.secret, checking side) and by its brokers (knock-<gateway>.secret, presenting
 * side). Follows the shared protocol (services/keygen/rotation.ts):
 *
 * - rotate: each file's secret → `<file>.previous`, one new secret → both files (atomically),
 *   the gateway's first: it follows its files (gateway/knock/secret-files.ts) and opens for
 *   a sequence derived from either secret. The broker reads its files at every knock
 *   (broker/knock/secrets.ts): it knocks with the new secret and, after a knock that did not
 *   open the SSH port, with the previous one — a gateway that has not loaded the new secret
 *   yet still lets it in.
 * - retire: the broker's `.previous` removed first (nothing presents the old secret), then
 *   the gateway's: from then on a sequence derived from the old secret opens nothing.
 * gateways.json does not change: it names the broker's secret file, not the secret.
 */
function paths(ctx: RotationContext): { files: string[] } {
  noArguments('knock-secret', ctx, 'the gateway is GATEWAY_ID/KEYGEN_GATEWAY_SUBDIR');
  // Checking side first, presenting side second.
  const files = [ctx.layout.gateway.knockSecret, ctx.layout.broker.knockSecret(ctx.env.GATEWAY_ID)];
  for (const f of files) if (!existsSync(f)) throw new ConfigError([`knock-secret: ${f} does not exist; time-based knocks (KNOCK_MODE=time) and a keygen run first`]);
  return { files };
}

registerRotation('knock-secret', {
  describe: "the secret of the gateway's time-based knock, at the gateway and its broker",
  rotate(ctx) {
    const { files } = paths(ctx);
    refuseDuringOverlap('knock-secret', ...files);
    const secret = randomBytes(32).toString('base64url');
    for (const f of files) {
      replaceFile(previousOf(f), readFileSync(f, 'utf8'), 0o600);
      replaceFile(f, secret, 0o600);
    }
    ctx.log.info('knock secret rotated: the gateway accepts both and the broker falls back to the previous one until retire knock-secret', { gateway: ctx.env.GATEWAY_ID });
    return Promise.resolve();
  },
  retire(ctx) {
    const { files } = paths(ctx);
    refuseWithoutOverlap('knock-secret', ...files);
    // Presenting side first: the broker stops knocking with the old secret before the gateway stops taking it.
    removePrevious(...[...files].reverse());
    ctx.log.info('knock secret retired: sequences derived from the previous secret open nothing once the gateway reloads', { gateway: ctx.env.GATEWAY_ID });
    return Promise.resolve();
  },
});
