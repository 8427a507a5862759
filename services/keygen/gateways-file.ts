import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fingerprintOfKey } from '../common/pki/ssh-keys';
import { sha256Hex } from '../common/pki/digest';
import type { KeygenEnv } from './env';
import type { KeyLayout } from './layout';
import { previousOf } from '../common/pki/files';

/**
 * The broker's gateways.json entry for this gateway, derived from the gateway's key files
 * (its host key's fingerprint, its queue password's SHA-256, its knock): rewritten by every
 * keygen run and by every rotation step, so that what the brokers accept always follows
 * what the gateway holds.
 */
export function writeGatewaysFile(L: KeyLayout, e: KeygenEnv, hostKeyFingerprint: string | string[] = hostKeyFingerprints(L)): void {
  const knock =
    e.KNOCK_MODE === 'static'
      ? { mode: 'static', ports: e.KNOCK_SEQUENCE }
      : { mode: 'time', secretFile: `${e.BROKER_SECRETS_DIR}/knock-${e.GATEWAY_ID}.secret`, length: e.KNOCK_LENGTH, portRange: e.KNOCK_PORT_RANGE, periodSeconds: e.KNOCK_PERIOD_SECONDS };
  const entry = {
    id: e.GATEWAY_ID,
    host: e.GATEWAY_HOST,
    sshPort: e.SSH_PORT,
    hostKeyFingerprint,
    queuePasswordSha256: queuePasswordHashes(L),
    knock,
  };
  // One broker serves a fleet: this gateway's entry replaces its old one, the others stay.
  let others: { id?: unknown }[] = [];
  if (existsSync(L.broker.gatewaysFile)) {
    const current = JSON.parse(readFileSync(L.broker.gatewaysFile, 'utf8')) as { gateways?: { id?: unknown }[] };
    others = (current.gateways ?? []).filter((g) => g.id !== e.GATEWAY_ID);
  }
  writeFileSync(L.broker.gatewaysFile, `${JSON.stringify({ gateways: [...others, entry] }, null, 2)}\n`, { mode: 0o644 });
}

/**
 * The gateway's host key fingerprint, or during a rotation's overlap (`<host key>.previous`
 * present) the new one's and the previous one's, new first: the brokers accept either
 * (rotation/gateway-host-key.ts).
 */
export function hostKeyFingerprints(L: KeyLayout): string | string[] {
  const current = fingerprintOfKey(readFileSync(L.gateway.hostKey, 'utf8'));
  const previousFile = previousOf(L.gateway.hostKey);
  if (!existsSync(previousFile)) return current;
  return [current, fingerprintOfKey(readFileSync(previousFile, 'utf8'))];
}

/**
 * The queue password's SHA-256, or during a rotation's overlap (`<queue.password>.previous`
 * present) the new one's and the previous one's: the broker's Redis user accepts both.
 */
function queuePasswordHashes(L: KeyLayout): string | string[] {
  const current = sha256Hex(readFileSync(L.gateway.queuePassword, 'utf8').trim());
  const previousFile = previousOf(L.gateway.queuePassword);
  if (!existsSync(previousFile)) return current;
  return [current, sha256Hex(readFileSync(previousFile, 'utf8').trim())];
}
