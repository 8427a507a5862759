import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import { previousOf, replaceFile } from '../../common/pki/files';
import { writeGatewaysFile } from '../gateways-file';
import { noArguments, refuseDuringOverlap, refuseWithoutOverlap, registerRotation, removePrevious, type RotationContext } from '../rotation';

/**
 * `nonstop-keygen rotate queue-password` / `retire queue-password`: the password the gateway
 * (GATEWAY_ID, KEYGEN_GATEWAY_SUBDIR) AUTHs with at its brokers' Redis, following the
 * shared protocol (services/keygen/rotation.ts):
 *
 * - rotate: the old password → `queue.password.previous`, a new one → `queue.password`
 *   (atomically), then gateways.json lists both hashes. Checking side: each broker sets
 *   every listed hash on the gateway's Redis user (ACL SETUSER keeps its connections).
 *   Presenting side: the gateway follows both files, AUTHs new-first and falls back to the
 *   previous password on WRONGPASS (a broker that has not reloaded yet), and moves its open
 *   connections to the new password (gateway/queue/lane.ts).
 * - retire: `.previous` removed, then gateways.json lists the new hash only; the brokers
 *   drop the old one from the Redis user, which refuses it from then on. Run it once the
 *   gateway logged 'queue password reloaded' and every broker its gateways reload.
 */
function passwordFile(ctx: RotationContext): string {
  noArguments('queue-password', ctx, 'the gateway is GATEWAY_ID/KEYGEN_GATEWAY_SUBDIR');
  const current = ctx.layout.gateway.queuePassword;
  if (!existsSync(current)) throw new ConfigError([`queue-password: ${current} does not exist; run nonstop-keygen first`]);
  return current;
}

registerRotation('queue-password', {
  describe: "the gateway's Redis password at its brokers",
  rotate(ctx) {
    const current = passwordFile(ctx);
    refuseDuringOverlap('queue-password', current);
    const previous = previousOf(current);
    replaceFile(previous, readFileSync(current, 'utf8'), 0o600);
    replaceFile(current, randomBytes(32).toString('base64url'), 0o600);
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('queue password rotated: the gateway and the brokers accept both until retire queue-password', { gateway: ctx.env.GATEWAY_ID, previous });
    return Promise.resolve();
  },
  retire(ctx) {
    const current = passwordFile(ctx);
    refuseWithoutOverlap('queue-password', current);
    removePrevious(current);
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('queue password retired: the brokers refuse the previous one once they reload', { gateway: ctx.env.GATEWAY_ID });
    return Promise.resolve();
  },
});
