import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors/config-error';
import type { TimeSpec } from './sequence';
import { previousOf } from '../pki/files';

/** The shortest knock secret either side takes (gateway config, broker config). */
export const MIN_KNOCK_SECRET_BYTES = 16;

/**
 * The knock secrets from the texts of a secret file and of `<file>.previous` (undefined:
 * absent, no rotation in progress). Pure. Throws ConfigError when the current secret is
 * shorter than MIN_KNOCK_SECRET_BYTES: the caller keeps what it had. A `.previous` that is
 * empty, too short or equal to the current secret adds nothing.
 */
export function knockSecretsFrom(variable: string, path: string, current: string, previous: string | undefined): Pick<TimeSpec, 'secret' | 'previousSecret'> {
  const secret = Buffer.from(current.trim(), 'utf8');
  if (secret.length < MIN_KNOCK_SECRET_BYTES) throw new ConfigError([`${variable}=${JSON.stringify(path)}: secret shorter than ${MIN_KNOCK_SECRET_BYTES} bytes`]);
  const old = previous === undefined ? undefined : Buffer.from(previous.trim(), 'utf8');
  return old && old.length >= MIN_KNOCK_SECRET_BYTES && !old.equals(secret) ? { secret, previousSecret: old } : { secret };
}

/** Reads a secret file and its `.previous` now (a missing `.previous`: undefined). */
export function readKnockSecretTexts(path: string): { current: string; previous: string | undefined } {
  const current = readFileSync(path, 'utf8');
  let previous: string | undefined;
  try {
    previous = readFileSync(previousOf(path), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { current, previous };
}
