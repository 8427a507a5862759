import type { Scope } from '../auth/tokens';

/** A command line nonstop-admin cannot act on; printed with the usage. */
export class UsageError extends Error {}

export const USAGE = `usage:
  nonstop-admin token create --collections a,b --scopes read,write,delete [--client NAME] [--expires-in 30d] [--label text]
  nonstop-admin token rotate ID [--revoke-old] [--expires-in 30d]
  nonstop-admin token list
  nonstop-admin token revoke ID
  nonstop-admin keys status
  nonstop-admin keys rotate [--wait-seconds 30]
  nonstop-admin keys rewrap [--wait-seconds 30]
  nonstop-admin keys retire KEY_ID
  nonstop-admin backup [--out FILE]
  nonstop-admin restore [--in FILE] [--merge] [--check]`;

/** `--name value` pairs; anything else is a usage error. */
export function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]!;
    const value = args[i + 1];
    if (!name.startsWith('--') || value === undefined) throw new UsageError(`unexpected argument ${JSON.stringify(name)}`);
    flags.set(name.slice(2), value);
  }
  return flags;
}

/**
 * `token rotate ID [--revoke-old] [--expires-in D]`: the id first, then flags, of which
 * --revoke-old alone takes no value.
 */
export function parseRotate(args: string[]): { id: string; revokeOld: boolean; expiresInMs?: number } {
  const [id, ...rest] = args;
  if (id === undefined || id.startsWith('--')) throw new UsageError('token rotate takes a token id');
  const revokeOld = rest.includes('--revoke-old');
  const flags = parseFlags(rest.filter((a) => a !== '--revoke-old'));
  for (const name of flags.keys()) if (name !== 'expires-in') throw new UsageError(`token rotate does not take --${name}`);
  const expiresIn = flags.get('expires-in');
  return { id, revokeOld, ...(expiresIn !== undefined ? { expiresInMs: parseDuration(expiresIn) } : {}) };
}

/** "30d", "12h", "15m", "90s" → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})([smhd])$/.exec(text);
  if (!m) throw new UsageError(`--expires-in takes a number and a unit (s, m, h, d), got ${JSON.stringify(text)}`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

export function parseScopes(text: string): Scope[] {
  const scopes = text.split(',').map((s) => s.trim());
  for (const s of scopes) if (s !== 'read' && s !== 'write' && s !== 'delete') throw new UsageError(`unknown scope ${JSON.stringify(s)} (read, write, delete)`);
  return scopes as Scope[];
}

export function parseCollections(text: string | undefined): string[] {
  return (text ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '');
}

/** How long `keys rotate` and `keys rewrap` wait for core to use the active key, by default. */
export const DEFAULT_KEY_WAIT_SECONDS = 30;

/** `[--wait-seconds N]`, the only flag of `keys rotate` and `keys rewrap`. */
export function parseKeyFlags(args: string[], command: string): { waitMs: number } {
  const flags = parseFlags(args);
  for (const name of flags.keys()) if (name !== 'wait-seconds') throw new UsageError(`${command} does not take --${name}`);
  const text = flags.get('wait-seconds') ?? String(DEFAULT_KEY_WAIT_SECONDS);
  if (!/^\d{1,4}$/.test(text) || Number(text) < 1) throw new UsageError(`--wait-seconds takes a whole number of seconds from 1 to 9999, got ${JSON.stringify(text)}`);
  return { waitMs: Number(text) * 1000 };
}
