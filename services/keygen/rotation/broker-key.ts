import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import { previousOf, replaceFile } from '../../common/pki/files';
import { fingerprintOfKey, generateSshKeyPair, publicKeyLine } from '../../common/pki/ssh-keys';
import { loadBrokers, renderAuthorizedKeys, saveBrokers, type BrokerRecord } from '../brokers';
import { noArguments, refuseDuringOverlap, refuseWithoutOverlap, registerRotation, removePrevious, type RotationContext } from '../rotation';

/**
 * `nonstop-keygen rotate broker-key` / `retire broker-key`: the SSH key of the broker
 * (BROKER_NAME, KEYGEN_BROKER_SUBDIR) authenticates with at its gateways, following the
 * shared protocol (services/keygen/rotation.ts).
 *
 * - rotate: pki/brokers.json keeps the old public key beside the new one, and this gateway's
 *   authorized_keys lists both with the broker's restrictions (checking side first); then
 *   the old key → `id_ed25519.previous`, the new one → `id_ed25519` (atomically). The broker
 *   follows both files, offers the new key first and the previous one if a gateway refuses
 *   it (its authorized_keys not reloaded yet), and moves each tunnel to the new key
 *   make-before-break (broker/tunnel/keeper.ts).
 * - retire: `.previous` removed, the old public key dropped from brokers.json and
 *   authorized_keys; the gateway closes connections still on it (as for revoke-broker), which
 *   by then are none. Run it once the broker logged 'tunnel replaced' (or 'ssh keys
 *   reloaded' with no tunnel up).
 *
 * Other gateways of a fleet get the new authorized_keys when nonstop-keygen runs for them
 * (it derives every gateway's file from brokers.json): run it for each before retire.
 */
function keyFile(ctx: RotationContext): string {
  noArguments('broker-key', ctx, 'the broker is BROKER_NAME/KEYGEN_BROKER_SUBDIR');
  const current = ctx.layout.broker.sshKey;
  if (!existsSync(current)) throw new ConfigError([`broker-key: ${current} does not exist; run nonstop-keygen first`]);
  return current;
}

function withRecord(ctx: RotationContext, change: (b: BrokerRecord) => BrokerRecord): BrokerRecord[] {
  const brokers = loadBrokers(ctx.layout.pki.brokers);
  const record = brokers.find((b) => b.name === ctx.env.BROKER_NAME);
  if (!record) throw new ConfigError([`broker-key: no broker named ${JSON.stringify(ctx.env.BROKER_NAME)} in ${ctx.layout.pki.brokers}; run nonstop-keygen first`]);
  if (record.revokedAt) throw new ConfigError([`broker-key: broker ${ctx.env.BROKER_NAME} was revoked at ${record.revokedAt}`]);
  return brokers.map((b) => (b === record ? change(b) : b));
}

function writeCheckingSide(ctx: RotationContext, brokers: BrokerRecord[]): void {
  saveBrokers(ctx.layout.pki.brokers, brokers);
  replaceFile(ctx.layout.gateway.authorizedKeys, renderAuthorizedKeys(brokers, ctx.env.QUEUE_PORT), 0o644);
}

registerRotation('broker-key', {
  describe: "a broker's SSH key, authorized by its gateways",
  rotate(ctx) {
    const current = keyFile(ctx);
    refuseDuringOverlap('broker-key', current);
    const old = readFileSync(current, 'utf8');
    const next = generateSshKeyPair(ctx.env.BROKER_NAME);
    // Checking side first: the gateway authorizes both before the broker can offer the new one.
    writeCheckingSide(
      ctx,
      withRecord(ctx, (b) => ({ ...b, sshPublicKey: publicKeyLine(next.publicKey, b.name), previousSshPublicKey: publicKeyLine(old, b.name) })),
    );
    replaceFile(previousOf(current), old, 0o600);
    replaceFile(current, next.privateKey, 0o600);
    ctx.log.info('broker key rotated: the gateways accept both until retire broker-key', { broker: ctx.env.BROKER_NAME, fingerprint: fingerprintOfKey(next.publicKey), previous: fingerprintOfKey(old) });
    return Promise.resolve();
  },
  retire(ctx) {
    const current = keyFile(ctx);
    refuseWithoutOverlap('broker-key', current);
    const retired = fingerprintOfKey(readFileSync(previousOf(current), 'utf8'));
    // Presenting side first: the broker stops offering the old key before the gateway refuses it.
    removePrevious(current);
    writeCheckingSide(
      ctx,
      withRecord(ctx, ({ previousSshPublicKey: _dropped, ...b }) => b),
    );
    ctx.log.info('broker key retired: the gateway refuses the previous one once it reloads', { broker: ctx.env.BROKER_NAME, retired });
    return Promise.resolve();
  },
});
