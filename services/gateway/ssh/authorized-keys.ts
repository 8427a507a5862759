import type { ParsedKey } from 'ssh2';
import { parseOneKey } from '../../common/pki/ssh-parse';
import { KeyOptionsError, NO_KEY_OPTIONS, parseKeyOptions, type KeyOptions } from '../../common/ssh/key-options';

export interface AuthorizedKey {
  key: ParsedKey;
  /** The comment field, used in logs to say which broker connected. */
  comment: string;
  /** The line's options (key-options.ts); NO_KEY_OPTIONS for a line without any. */
  options: KeyOptions;
}

/** An authorized_keys text that cannot be used; `line` is 1-based. */
export class AuthorizedKeysError extends Error {
  constructor(
    readonly line: number,
    detail: string,
  ) {
    super(`line ${line}: ${detail}`);
    this.name = 'AuthorizedKeysError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Key types OpenSSH writes at the start of a line without options. */
const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)?$/;

/** Where the option field ends: the first space or tab outside double quotes (sshkey_advance_past_options). */
function optionsEnd(line: string): number {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '\\' && line[i + 1] === '"') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) return i;
  }
  return line.length;
}

/**
 * Parses an OpenSSH authorized_keys text: `[options] keytype base64 [comment]` per line.
 * Blank lines and # comments are skipped. Options restrict the key (key-options.ts); one
 * the gateway cannot honour is refused with its line number rather than ignored.
 */
export function parseAuthorizedKeys(text: string): AuthorizedKey[] {
  const keys: AuthorizedKey[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let options = NO_KEY_OPTIONS;
    let rest = line;
    if (!KEY_TYPE.test(line.split(/[ \t]/, 1)[0]!)) {
      const end = optionsEnd(line);
      try {
        options = parseKeyOptions(line.slice(0, end));
      } catch (err) {
        if (err instanceof KeyOptionsError) throw new AuthorizedKeysError(i + 1, err.message);
        throw err;
      }
      rest = line.slice(end).trim();
    }
    const fields = rest.split(/[ \t]+/);
    if (!KEY_TYPE.test(fields[0] ?? '')) throw new AuthorizedKeysError(i + 1, `no key type after the options (got ${JSON.stringify((fields[0] ?? '').slice(0, 40))})`);
    let key: ParsedKey;
    try {
      key = parseOneKey(`${fields[0]} ${fields[1] ?? ''}`);
    } catch (err) {
      throw new AuthorizedKeysError(i + 1, (err as Error).message);
    }
    keys.push({ key, comment: fields.slice(2).join(' '), options });
  });
  return keys;
}

/** The authorized key whose type and public blob equal the offered ones. */
export function findAuthorizedKey(keys: readonly AuthorizedKey[], algo: string, data: Buffer): AuthorizedKey | undefined {
  return keys.find((k) => k.key.type === algo && k.key.getPublicSSH().equals(data));
}
