import { AddressPatternError, addressPermitted, matchWildcard, parseAddressPatternList, type AddressPatternList } from './address-patterns';

/**
 * The options of an authorized_keys line that restrict a broker key, with OpenSSH's
 * semantics (sshd(8) AUTHORIZED_KEYS FILE FORMAT; auth-options.c, auth2-pubkeyfile.c and
 * channels.c in openssh-portable):
 *
 *   from="pattern-list"      the key works only from matching client addresses
 *   expiry-time="YYYYMMDD[HHMM[SS]][Z|UTC]"  the key stops working after that time
 *                            (local time without Z, as sshd reads it)
 *   permitlisten="[host:]port"  a -R may listen only there (several allowed; `*` port)
 *   restrict                 no port forwarding, agent, X11, pty or user rc, unless an
 *                            option after it allows one back
 *   [no-]port-forwarding     turns -R on or off (after restrict: on again)
 *   [no-]agent-forwarding, [no-]x11-forwarding, [no-]pty, [no-]user-rc
 *                            accepted and recorded; the gateway grants none of these to
 *                            any key, as an sshd_config that forbids them would
 *
 * Options the gateway cannot honour (command=, environment=, permitopen=, principals=,
 * tunnel=, cert-authority, touch-required, verify-required) are refused, never ignored:
 * dropping a restriction an operator wrote would widen access.
 */
export interface ListenPermission {
  /** A wildcard pattern for the requested listen host, `*` for any. */
  host: string;
  /** The one port, or undefined for `*`. */
  port: number | undefined;
}

export interface KeyOptions {
  from?: AddressPatternList;
  /** Seconds since the epoch after which the key is refused. */
  expiresAt?: number;
  /** When present, a -R must match one of these. */
  permitListen?: readonly ListenPermission[];
  portForwarding: boolean;
  agentForwarding: boolean;
  x11Forwarding: boolean;
  pty: boolean;
  userRc: boolean;
}

export const NO_KEY_OPTIONS: KeyOptions = Object.freeze({ portForwarding: true, agentForwarding: true, x11Forwarding: true, pty: true, userRc: true });

/** A key line's options that cannot be used; `message` names the option and why. */
export class KeyOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyOptionsError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** OpenSSH's SSH_AUTHOPT_PERMIT_MAX. */
const MAX_PERMITS = 4096;

const FLAGS = {
  'port-forwarding': 'portForwarding',
  'agent-forwarding': 'agentForwarding',
  'x11-forwarding': 'x11Forwarding',
  pty: 'pty',
  'user-rc': 'userRc',
} as const;

const UNSUPPORTED: Record<string, string> = {
  command: 'the gateway runs no commands',
  environment: 'the gateway runs no commands',
  permitopen: 'the gateway opens no -L or -D forwards for any key',
  principals: 'the gateway takes no certificates',
  'cert-authority': 'the gateway takes no certificates',
  tunnel: 'the gateway forwards no tun devices',
  'touch-required': 'security-key options are not supported',
  'no-touch-required': 'security-key options are not supported',
  'verify-required': 'security-key options are not supported',
};

/**
 * Splits an option string at the commas outside double quotes. Inside quotes `\"` is a
 * quote (opt_dequote); a value must be quoted whole and be followed by a comma or the end.
 */
function splitOptions(text: string): { name: string; value?: string }[] {
  const out: { name: string; value?: string }[] = [];
  let i = 0;
  while (i <= text.length) {
    const nameMatch = /^[^,="]*/.exec(text.slice(i))!;
    const name = nameMatch[0];
    i += name.length;
    let value: string | undefined;
    if (text[i] === '=') {
      i++;
      if (text[i] !== '"') throw new KeyOptionsError(`option ${name}: missing start quote`);
      i++;
      value = '';
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && text[i + 1] === '"') i++;
        value += text[i];
        i++;
      }
      if (i >= text.length) throw new KeyOptionsError(`option ${name}: missing end quote`);
      i++;
    } else if (text[i] === '"') {
      throw new KeyOptionsError(`option ${JSON.stringify(name)}: unexpected quote`);
    }
    if (name === '') throw new KeyOptionsError(text.endsWith(',') ? 'unexpected end of options' : 'an empty option');
    out.push(value === undefined ? { name } : { name, value });
    if (i >= text.length) break;
    if (text[i] !== ',') throw new KeyOptionsError(`unknown key option after ${name}`);
    i++;
    if (i >= text.length) throw new KeyOptionsError('unexpected end of options');
  }
  return out;
}

/**
 * OpenSSH's parse_absolute_time: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, UTC with a
 * trailing Z or UTC, otherwise local time. Out-of-range days roll over as mktime does.
 */
export function parseExpiryTime(text: string): number {
  let s = text;
  let utc = false;
  if (s.length > 1 && /z$/i.test(s)) {
    utc = true;
    s = s.slice(0, -1);
  } else if (s.length > 3 && /utc$/i.test(s)) {
    utc = true;
    s = s.slice(0, -3);
  }
  if (![8, 12, 14].includes(s.length) || !/^\d+$/.test(s)) throw new KeyOptionsError(`expiry-time=${JSON.stringify(text)}: expected YYYYMMDD[HHMM[SS]][Z]`);
  const [y, mo, d, h, mi, se] = [s.slice(0, 4), s.slice(4, 6), s.slice(6, 8), s.slice(8, 10) || '0', s.slice(10, 12) || '0', s.slice(12, 14) || '0'].map(Number) as [number, number, number, number, number, number];
  // strptime's ranges for %m %d %H %M %S.
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 61) throw new KeyOptionsError(`expiry-time=${JSON.stringify(text)}: not a date and time`);
  const ms = utc ? Date.UTC(y, mo - 1, d, h, mi, se) : new Date(y, mo - 1, d, h, mi, se).getTime();
  const seconds = Math.floor(ms / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new KeyOptionsError(`expiry-time=${JSON.stringify(text)}: invalid expiry time`);
  return seconds;
}

/** handle_permit(…, allow_bare_port=1): `port`, `host:port`, `[v6]:port`; port `*` or 1-65535. */
function parsePermitListen(text: string): ListenPermission {
  const spec = text.includes(':') ? text : `*:${text}`;
  let host: string;
  let port: string;
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']');
    if (close < 0 || spec[close + 1] !== ':') throw new KeyOptionsError(`permitlisten=${JSON.stringify(text)}: invalid permission hostname`);
    host = spec.slice(1, close);
    port = spec.slice(close + 2);
  } else {
    // hpdelim2: the host ends at the first ':' or '/'.
    const cut = spec.search(/[:/]/);
    host = spec.slice(0, cut);
    port = spec.slice(cut + 1);
  }
  if (host === '' || host.length >= 1025) throw new KeyOptionsError(`permitlisten=${JSON.stringify(text)}: invalid permission hostname`);
  if (port === '*') return { host, port: undefined };
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw new KeyOptionsError(`permitlisten=${JSON.stringify(text)}: invalid permission port`);
  return { host, port: Number(port) };
}

/** Parses the option field of an authorized_keys line (the text before the key type). */
export function parseKeyOptions(text: string): KeyOptions {
  const o: { -readonly [K in keyof KeyOptions]: KeyOptions[K] } = { ...NO_KEY_OPTIONS };
  const permits: ListenPermission[] = [];
  for (const { name: rawName, value } of splitOptions(text)) {
    const name = rawName.toLowerCase();
    if (UNSUPPORTED[name] !== undefined) throw new KeyOptionsError(`option ${rawName} is not supported: ${UNSUPPORTED[name]}`);
    if (value === undefined) {
      if (name === 'restrict') {
        Object.assign(o, { portForwarding: false, agentForwarding: false, x11Forwarding: false, pty: false, userRc: false });
        continue;
      }
      const negated = name.startsWith('no-');
      const flag = FLAGS[(negated ? name.slice(3) : name) as keyof typeof FLAGS];
      if (flag === undefined) throw new KeyOptionsError(`unknown key option ${JSON.stringify(rawName)}`);
      o[flag] = !negated;
      continue;
    }
    switch (name) {
      case 'from':
        if (o.from) throw new KeyOptionsError('multiple "from" clauses');
        try {
          o.from = parseAddressPatternList(value);
        } catch (err) {
          if (err instanceof AddressPatternError) throw new KeyOptionsError(err.message);
          throw err;
        }
        break;
      case 'expiry-time': {
        // Several are allowed; the earliest wins.
        const t = parseExpiryTime(value);
        o.expiresAt = o.expiresAt === undefined ? t : Math.min(o.expiresAt, t);
        break;
      }
      case 'permitlisten':
        if (permits.length >= MAX_PERMITS) throw new KeyOptionsError('too many permission directives');
        permits.push(parsePermitListen(value));
        break;
      default:
        throw new KeyOptionsError(`unknown key option ${JSON.stringify(rawName)}`);
    }
  }
  if (permits.length > 0) o.permitListen = permits;
  return o;
}

export type KeyRefusal = 'source_not_permitted' | 'expired';

/** Why a key may not be used by a client at `address` at `nowMs` (auth_authorise_keyopts), or undefined. */
export function keyRefusal(options: KeyOptions, address: string, nowMs: number): KeyRefusal | undefined {
  if (options.expiresAt !== undefined && options.expiresAt < Math.floor(nowMs / 1000)) return 'expired';
  if (options.from && !addressPermitted(options.from, address)) return 'source_not_permitted';
  return undefined;
}

/**
 * Why this key may not ask for a remote forward listening on bindAddr:bindPort, or
 * undefined: forwarding off for the key, or no permitlisten matching (channels.c
 * remote_open_match: the port, then the host pattern against the lowercased request).
 */
export function listenRefusal(options: KeyOptions, req: { bindAddr: string; bindPort: number }): string | undefined {
  if (!options.portForwarding) return 'port forwarding is off for this key';
  if (!options.permitListen) return undefined;
  const host = req.bindAddr.toLowerCase();
  const ok = options.permitListen.some((p) => (p.port === undefined || p.port === req.bindPort) && matchWildcard(host, p.host));
  return ok ? undefined : `${req.bindAddr}:${req.bindPort} is not in the key's permitlisten`;
}
