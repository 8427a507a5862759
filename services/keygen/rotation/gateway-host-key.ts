import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import { previousOf, replaceFile } from '../../common/pki/files';
import { fingerprintOfKey, generateSshKeyPair } from '../../common/pki/ssh-keys';
import { writeGatewaysFile } from '../gateways-file';
import { noArguments, refuseDuringOverlap, refuseWithoutOverlap, registerRotation, removePrevious, type RotationContext } from '../rotation';

/**
 * `nonstop-keygen rotate gateway-host-key` / `retire gateway-host-key`: the SSH host key of
 * the gateway (GATEWAY_ID, KEYGEN_GATEWAY_SUBDIR), following the shared protocol
 * (services/keygen/rotation.ts). An SSH server presents one ed25519 host key per handshake
 * and a client cannot ask for another, so the gateway cannot fall back: the checking side
 * goes first.
 *
 * - rotate: gateways.json pins both fingerprints, [new, old], BEFORE the key moves; then the
 *   old key → `ssh_host_ed25519_key.previous`, the new one → `ssh_host_ed25519_key`
 *   (atomically). Each broker accepts either key; its tunnels, verified against the old one
 *   which is still pinned, are kept (gateways/diff.ts `hostKeys`). The gateway follows its
 *   key file and presents the new key to new connections; established ones keep the key
 *   their broker verified (gateway/ssh/server.ts setHostKey).
 * - retire: `.previous` removed, then gateways.json pins the new fingerprint alone. A broker
 *   tunnel still verified against the old key is replaced make-before-break (a new tunnel,
 *   on the new key, comes up before the old one closes: broker/tunnel/keeper.ts). Run it once
 *   the gateway logged 'ssh host key reloaded'.
 */
function hostKeyFile(ctx: RotationContext): string {
  noArguments('gateway-host-key', ctx, 'the gateway is GATEWAY_ID/KEYGEN_GATEWAY_SUBDIR');
  const current = ctx.layout.gateway.hostKey;
  if (!existsSync(current)) throw new ConfigError([`gateway-host-key: ${current} does not exist; run nonstop-keygen first`]);
  return current;
}

registerRotation('gateway-host-key', {
  describe: "the gateway's SSH host key, pinned by its brokers",
  rotate(ctx) {
    const current = hostKeyFile(ctx);
    refuseDuringOverlap('gateway-host-key', current);
    const old = readFileSync(current, 'utf8');
    const next = generateSshKeyPair(`gateway-${ctx.env.GATEWAY_ID}`);
    const fingerprints = [fingerprintOfKey(next.publicKey), fingerprintOfKey(old)];
    // Checking side first: every broker pins both before the gateway can present the new one.
    writeGatewaysFile(ctx.layout, ctx.env, fingerprints);
    replaceFile(previousOf(current), old, 0o600);
    replaceFile(current, next.privateKey, 0o600);
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('gateway host key rotated: the brokers accept both until retire gateway-host-key', { gateway: ctx.env.GATEWAY_ID, fingerprint: fingerprints[0], previous: fingerprints[1] });
    return Promise.resolve();
  },
  retire(ctx) {
    const current = hostKeyFile(ctx);
    refuseWithoutOverlap('gateway-host-key', current);
    const retired = fingerprintOfKey(readFileSync(previousOf(current), 'utf8'));
    removePrevious(current);
    writeGatewaysFile(ctx.layout, ctx.env);
    ctx.log.info('gateway host key retired: the brokers refuse the previous one once they reload', { gateway: ctx.env.GATEWAY_ID, retired });
    return Promise.resolve();
  },
});
