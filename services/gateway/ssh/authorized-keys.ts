import type { ParsedKey } from 'ssh2';
import { parseOneKey } from '../../common/pki/ssh-parse';

export interface AuthorizedKey {
  key: ParsedKey;
  /** The comment field, used in logs to say which broker connected. */
  comment: string;
}

/**
 * Parses an OpenSSH authorized_keys text. Options before the key type (from="...",
 * command="...") are refused rather than ignored: silently dropping a restriction an
 * operator wrote would widen access. Blank lines and # comments are skipped.
 */
export function parseAuthorizedKeys(text: string): AuthorizedKey[] {
  const keys: AuthorizedKey[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    if (!/^(ssh-|ecdsa-|sk-)/.test(fields[0] ?? '')) {
      throw new Error(`line ${i + 1}: options before the key type are not supported`);
    }
    let key: ParsedKey;
    try {
      key = parseOneKey(`${fields[0]} ${fields[1] ?? ''}`);
    } catch (err) {
      throw new Error(`line ${i + 1}: ${(err as Error).message}`);
    }
    keys.push({ key, comment: fields.slice(2).join(' ') });
  });
  return keys;
}

/** The authorized key whose type and public blob equal the offered ones. */
export function findAuthorizedKey(keys: readonly AuthorizedKey[], algo: string, data: Buffer): AuthorizedKey | undefined {
  return keys.find((k) => k.key.type === algo && k.key.getPublicSSH().equals(data));
}
