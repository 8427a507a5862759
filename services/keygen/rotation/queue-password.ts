import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../../common/errors/config-error';
import { syncDir } from '../../common/pki/files';
import { replaceFile } from '../brokers';
import { writeGatewaysFile } from '../gateways-file';
import { registerRotation, type RotationContext } from '../rotation';

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
function paths(ctx: RotationContext): { current: string; previous: string } {
  if (ctx.args.length > 0) throw new ConfigError([`queue-password: takes no arguments (the gateway is GATEWAY_ID/KEYGEN_GATEWAY_SUBDIR), got ${JSON.stringify(ctx.args.join(' '))}`]);
  const current = ctx.layout.gateway.queuePassword;
  if (!existsSync(current)) throw new ConfigError([`queue-password: ${current} does not exist; run nonstop-keygen first`]);
  return { current, previous: `${current}.previous` };
}

registerRotation('queue-password', {
  describe: "the gateway's Redis password at its brokers",
  rotate(ctx) {
    const { current, previous } = paths(ctx);
    if (existsSync(previous)) throw new ConfigError([`rotate queue-password: ${previous} exists, a rotation is in progress; retire queue-password first`]);
    replaceFile(previous, readFileSync(current, 'utf8'), 0o600);
    replaceFile(current, randomBytes(32).toString('base64url'), 0o600);
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('queue password rotated: the gateway and the brokers accept both until retire queue-password', { gateway: ctx.env.GATEWAY_ID, previous });
    return Promise.resolve();
  },
  retire(ctx) {
    const { previous } = paths(ctx);
    if (!existsSync(previous)) throw new ConfigError([`retire queue-password: ${previous} does not exist, nothing to retire`]);
    rmSync(previous);
    syncDir(dirname(previous));
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('queue password retired: the brokers refuse the previous one once they reload', { gateway: ctx.env.GATEWAY_ID });
    return Promise.resolve();
  },
});
