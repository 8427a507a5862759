import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatKeyDates, KEY_DATES_FILE_NAME, KeyDatesError, parseKeyDates, type KeyDate } from '../common/pki/key-dates';
import { publicKeyBlob, SshKeyFormatError } from '../common/pki/ssh-keys';
import { KeyOptionsError, parseExpiryTime } from '../common/ssh/key-options';
import type { Logger } from '../common/log/logger';
import { loadBrokers } from './brokers';
import { replaceFile } from '../common/pki/files';
import type { KeyLayout } from './layout';

/**
 * keygen's side of `key-dates.json` (services/common/pki/key-dates.ts): the keys of each
 * tier that have no date of their own, with the date keygen first saw each content and the
 * date it should be replaced by (createdAt + KEY_LIFETIME_DAYS). Certificates and CRLs are
 * not listed: their own dates are exported from the files themselves. Core's data keys are
 * not either: nonstop-admin rotates them into data-keys.json without keygen, so a date
 * stamped here would describe a file that has since changed.
 */

const DAY_MS = 86_400_000;

/** The key files (by base name, before any `.previous`) each tier's directory may hold. */
const TIER_KEYS = {
  gateway: /^(ssh_host_ed25519_key|queue\.password|knock\.secret)$/,
  broker: /^(id_ed25519|knock-[a-z0-9][a-z0-9-]{0,63}\.secret)$/,
  core: /^$/,
} as const;
export type KeyTier = keyof typeof TIER_KEYS;

/** A key file: `current` for `<file>`, `previous` for `<file>.previous` during an overlap. */
export function isTierKeyFile(tier: KeyTier, name: string): boolean {
  return TIER_KEYS[tier].test(name.endsWith('.previous') ? name.slice(0, -'.previous'.length) : name);
}

export function contentFingerprint(content: Buffer): string {
  return `sha256:${createHash('sha256').update(content).digest('hex').slice(0, 16)}`;
}

export interface KeyFile {
  name: string;
  content: Buffer;
  /** A date the key stops working regardless of its age (a broker key's expiry-time=), ms. */
  expiresAtMs?: number | undefined;
}

/**
 * The manifest for `files` given the last one: a content seen before keeps its createdAt,
 * whatever its name now (a rotation moves the old key to `<file>.previous` unchanged, and
 * its age goes with it); a new content is stamped `now`. notAfter is createdAt plus the
 * lifetime, or the key's own expiry when that is earlier. Sorted by name, so an unchanged
 * directory gives an identical text. Pure.
 */
export function nextKeyDates(previous: readonly KeyDate[], files: readonly KeyFile[], now: Date, lifetimeDays: number): KeyDate[] {
  const createdByContent = new Map(previous.map((k) => [k.fingerprint, k.createdAt]));
  return [...files]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((f) => {
      const fingerprint = contentFingerprint(f.content);
      const createdAt = createdByContent.get(fingerprint) ?? now.toISOString();
      let notAfterMs = Date.parse(createdAt) + lifetimeDays * DAY_MS;
      if (f.expiresAtMs !== undefined) notAfterMs = Math.min(notAfterMs, f.expiresAtMs);
      return { name: f.name, fingerprint, createdAt, notAfter: new Date(notAfterMs).toISOString() };
    });
}

/** Every key file under `dir` (nested ones by base name, as k8s-secrets flattens them). */
function keyFilesIn(tier: KeyTier, dir: string): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && isTierKeyFile(tier, name)) out.push({ name, path });
    }
  };
  walk(dir);
  return out;
}

/**
 * expiry-time= of the broker whose SSH key this is, from pki/brokers.json (the gateway
 * stops accepting the key then, whatever its age), in ms; undefined when none is set.
 */
function brokerKeyExpiry(brokersFile: string, key: Buffer): number | undefined {
  let blob: string;
  try {
    blob = publicKeyBlob(key).toString('base64');
  } catch (err) {
    // Not keygen's key format (an operator's own key): dated by age alone.
    if (err instanceof SshKeyFormatError) return undefined;
    throw err;
  }
  const record = loadBrokers(brokersFile).find((b) => b.sshPublicKey.split(' ')[1] === blob);
  if (record?.expiryTime === undefined) return undefined;
  try {
    return parseExpiryTime(record.expiryTime) * 1000;
  } catch (err) {
    if (err instanceof KeyOptionsError) return undefined;
    throw err;
  }
}

/**
 * Rewrites one tier's key-dates.json from the files on disk (only when its text changes, so
 * an unchanged run touches nothing). A manifest that cannot be read is replaced, its dates
 * lost (one warning): the keys are then dated from this run.
 */
export function refreshKeyDates(L: KeyLayout, tier: KeyTier, lifetimeDays: number, log: Logger, now = new Date()): void {
  const dir = L[tier].dir;
  if (!existsSync(dir)) return;
  const manifest = join(dir, KEY_DATES_FILE_NAME);
  let previous: KeyDate[] = [];
  if (existsSync(manifest)) {
    try {
      previous = parseKeyDates(readFileSync(manifest, 'utf8')).keys;
    } catch (err) {
      if (!(err instanceof KeyDatesError)) throw err;
      log.warn('key dates unreadable; keys dated from now', { file: manifest, err: err.message });
    }
  }
  const files = keyFilesIn(tier, dir).map(({ name, path }): KeyFile => {
    const content = readFileSync(path);
    const sshKey = tier === 'broker' && name.startsWith('id_ed25519');
    return { name, content, expiresAtMs: sshKey && existsSync(L.pki.brokers) ? brokerKeyExpiry(L.pki.brokers, content) : undefined };
  });
  replaceFile(manifest, formatKeyDates({ version: 1, keys: nextKeyDates(previous, files, now, lifetimeDays) }), 0o644);
}

/** Every tier this run's layout holds: called after keygen's run and after each rotate/retire. */
export function refreshAllKeyDates(L: KeyLayout, lifetimeDays: number, log: Logger): void {
  for (const tier of ['gateway', 'broker', 'core'] as const) refreshKeyDates(L, tier, lifetimeDays, log);
}
