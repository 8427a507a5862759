import { env, intItem, strItem, type parseEnv } from '../common/config/env';
import { BROKER_NAME, GATEWAY_ID } from '../common/ids/names';
import { DEFAULT_KNOCK_LENGTH, DEFAULT_KNOCK_PORT_RANGE } from '../common/knock/strength';

/** nonstop-keygen's environment: what to issue, for which gateway and broker, and where. */
export const keygenEnv = {
  KEYGEN_OUT: env.absPath('/keys'),
  /** Where this gateway's files go under KEYGEN_OUT: one directory per gateway of a fleet. */
  KEYGEN_GATEWAY_SUBDIR: env.str({ def: 'gateway', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'a directory name' }),
  GATEWAY_ID: env.str({ def: 'gw1', pattern: GATEWAY_ID, expected: 'a gateway id' }),
  GATEWAY_HOST: env.str({ def: 'gateway', pattern: /^[A-Za-z0-9.:-]{1,253}$/, expected: 'a host name or address' }),
  SSH_PORT: env.port(2222),
  CORE_NAMES: env.list(strItem(/^[A-Za-z0-9.:-]{1,253}$/), { def: 'core', expected: 'DNS names for core', min: 1 }),
  /** The broker this run issues (or keeps) a key pair and client certificate for. */
  BROKER_NAME: env.str({ def: 'broker', pattern: BROKER_NAME, expected: 'a broker name (letters, digits, . and -, at most 64)' }),
  /** Where that broker's files go under KEYGEN_OUT: one directory per broker. */
  KEYGEN_BROKER_SUBDIR: env.str({ def: 'broker', pattern: /^[a-z0-9][a-z0-9-]{0,63}$/, expected: 'a directory name' }),
  /** Restrictions on that broker's key in every gateway's authorized_keys (OpenSSH from= and expiry-time=). */
  BROKER_FROM: env.optional(env.str({ expected: 'an OpenSSH pattern-list' })),
  BROKER_KEY_EXPIRY: env.optional(env.str({ expected: 'YYYYMMDD[HHMM[SS]][Z]' })),
  /** The gateway's QUEUE_PORT: the one port a broker key may ask to have forwarded. */
  QUEUE_PORT: env.port(6379),
  BROKER_SECRETS_DIR: env.absPath('/etc/nonstop/broker'),
  KNOCK_MODE: env.oneOf(['static', 'time'], 'time'),
  KNOCK_SEQUENCE: env.optional(env.list(intItem(1, 65535), { expected: 'comma-separated TCP ports', min: 2, max: 32 })),
  KNOCK_LENGTH: env.int({ min: 2, max: 32, def: DEFAULT_KNOCK_LENGTH }),
  KNOCK_PORT_RANGE: env.str({ def: DEFAULT_KNOCK_PORT_RANGE, pattern: /^\d{1,5}-\d{1,5}$/, expected: 'START-END' }),
  KNOCK_PERIOD_SECONDS: env.int({ min: 5, max: 3600, def: 30 }),
  /** How long a key without a date of its own (SSH key, queue password, knock secret) is meant to live: its notAfter in key-dates.json. */
  KEY_LIFETIME_DAYS: env.int({ min: 1, max: 36500, def: 365 }),
};

export type KeygenEnv = ReturnType<typeof parseEnv<typeof keygenEnv>>;
