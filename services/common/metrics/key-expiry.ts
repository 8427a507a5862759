import { dirname, join } from 'node:path';
import { Gauge, type Registry } from 'prom-client';
import { env, parseEnv } from '../config/env';
import { FollowedFile } from '../config/followed-file';
import { KEY_DATES_FILE_NAME, KeyDatesError, parseKeyDates } from '../pki/key-dates';
import type { Logger } from '../log/logger';

/** How often a tier re-reads its key-dates.json: a rotation's new dates show within this. */
export const KEY_DATES_POLL_MS = 1000;

/**
 * notAfter of each key without a date of its own (SSH keys, queue passwords, knock secrets),
 * from the manifest keygen writes beside them (services/keygen/key-dates.ts). `key` is the
 * key's file name, `<file>.previous` for the old key during a rotation's overlap: bounded by
 * what keygen issues to the tier.
 */
export function keyExpiryGauge(registers: Registry[]): Gauge<'key'> {
  return new Gauge({
    name: 'nonstop_key_expiry_timestamp_seconds',
    help: "notAfter keygen gave each key this service holds that has no date of its own (createdAt + KEY_LIFETIME_DAYS, or a broker key's expiry-time= when earlier), by file name, unix seconds",
    labelNames: ['key'] as const,
    registers,
  });
}

/**
 * KEY_DATES_FILE, by default the manifest beside `keygenFile`: a file keygen writes at the
 * top of the same tier directory (the gateway's authorized_keys, the broker's gateways.json,
 * core's data-keys.json), so the default follows wherever a deployment mounts that directory.
 */
export function keyDatesFile(keygenFile: string, source: NodeJS.ProcessEnv = process.env): string {
  return parseEnv({ KEY_DATES_FILE: env.absPath(join(dirname(keygenFile), KEY_DATES_FILE_NAME)) }, source).KEY_DATES_FILE;
}

/**
 * Follows the tier's key-dates.json and exports its dates. The file is optional (a
 * deployment whose keys keygen did not issue has none): absent, there is no series and one
 * warning. A text that does not parse is refused with one line and the last good dates are
 * kept, as every other followed file in the project. Returns the stop function.
 */
export function followKeyDates(path: string, gauge: Gauge<'key'>, log: Logger, intervalMs = KEY_DATES_POLL_MS): () => void {
  const file = new FollowedFile(path, {
    changed(text) {
      let keys;
      try {
        keys = parseKeyDates(text).keys;
      } catch (err) {
        if (!(err instanceof KeyDatesError)) throw err;
        log.warn('key dates refused; last good kept', { file: path, err: err.message });
        return;
      }
      gauge.reset();
      for (const k of keys) gauge.set({ key: k.name }, Math.floor(Date.parse(k.notAfter) / 1000));
      log.info('key dates loaded', { file: path, keys: keys.length });
    },
    unreadable(err) {
      if (err.code === 'ENOENT') {
        gauge.reset();
        log.warn('no key dates file; key expiry not exported', { file: path });
      } else {
        log.warn('key dates unreadable; last good kept', { file: path, code: err.code });
      }
    },
  });
  file.check();
  file.start(intervalMs);
  return () => file.stop();
}
