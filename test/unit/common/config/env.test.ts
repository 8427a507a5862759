import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { env, intItem, parseEnv, readSecretFile, strItem } from '../../../../services/common/config/env';
import { expectConfigError } from '../../../support/config-error';
import { tempDir } from '../../../support/tmp';

/** Runs parseEnv and returns the ConfigError it throws (fails the test if it does not). */

describe('parseEnv', () => {
  it('applies defaults when a variable is unset', () => {
    const out = parseEnv({ PORT: env.port(8080), MODE: env.oneOf(['a', 'b'], 'b'), ON: env.bool(true), DIR: env.absPath('/var/x') }, {});
    assert.deepEqual(out, { PORT: 8080, MODE: 'b', ON: true, DIR: '/var/x' });
  });

  it('treats an empty or blank value as unset, so the default applies', () => {
    const out = parseEnv({ A: env.int({ min: 0, max: 10, def: 7 }), B: env.str({ def: 'dflt' }) }, { A: '', B: '   ' });
    assert.deepEqual(out, { A: 7, B: 'dflt' });
  });

  it('reports a missing required variable by name with what was expected', () => {
    const err = expectConfigError(() => parseEnv({ CORE_URL: env.str({ pattern: /^https:/, expected: 'https://host' }) }, {}));
    assert.equal(err.code, 'config_invalid');
    assert.equal(err.problems.length, 1);
    assert.match(err.message, /^CORE_URL=\(unset\): is required \(https:\/\/host\)$/);
  });

  it('reports an empty required variable as unset', () => {
    const err = expectConfigError(() => parseEnv({ DATA: env.absPath() }, { DATA: '' }));
    assert.match(err.message, /DATA=\(unset\): is required \(an absolute path\)/);
  });

  it('names every bad variable at once, on one line', () => {
    const shape = { A_PORT: env.port(), B_MODE: env.oneOf(['x', 'y']), C_OK: env.int({ min: 1, max: 5, def: 2 }), D_PATH: env.absPath() };
    const err = expectConfigError(() => parseEnv(shape, { A_PORT: '70000', B_MODE: 'z\nINJECTED=1', D_PATH: 'relative/path' }));
    assert.equal(err.problems.length, 3);
    assert.ok(!err.message.includes('\n'), 'message must be a single line');
    assert.match(err.message, /A_PORT="70000": expected an integer from 1 to 65535/);
    assert.match(err.message, /B_MODE="z\\nINJECTED=1": expected one of x, y/);
    assert.match(err.message, /D_PATH="relative\/path": expected an absolute path/);
    assert.ok(!err.message.includes('C_OK'));
  });

  it('hides the values of secret-looking variables', () => {
    const shape = {
      API_SECRET: env.int({ min: 0, max: 1 }),
      DB_PASSWORD: env.int({ min: 0, max: 1 }),
      ADMIN_TOKEN: env.int({ min: 0, max: 1 }),
      SIGNING_KEY: env.int({ min: 0, max: 1 }),
    };
    const err = expectConfigError(() =>
      parseEnv(shape, { API_SECRET: 's3cr3t-value', DB_PASSWORD: 'hunter2-value', ADMIN_TOKEN: 'tok-value', SIGNING_KEY: 'key-value' }),
    );
    assert.equal(err.problems.length, 4);
    for (const name of Object.keys(shape)) assert.match(err.message, new RegExp(`${name}=\\(hidden\\)`));
    for (const value of ['s3cr3t-value', 'hunter2-value', 'tok-value', 'key-value']) assert.ok(!err.message.includes(value), value);
  });

  it('shows the path of a *_FILE variable even when its name mentions a secret', () => {
    const shape = {
      KNOCK_SECRET_FILE: env.absPath(),
      TLS_KEY_FILE: env.absPath(),
      QUEUE_PASSWORD_FILE: env.absPath(),
      SSH_AUTHORIZED_KEYS_FILE: env.absPath(),
    };
    const err = expectConfigError(() =>
      parseEnv(shape, { KNOCK_SECRET_FILE: 'rel/knock', TLS_KEY_FILE: 'rel/tls', QUEUE_PASSWORD_FILE: 'rel/queue', SSH_AUTHORIZED_KEYS_FILE: 'rel/keys' }),
    );
    assert.match(err.message, /KNOCK_SECRET_FILE="rel\/knock"/);
    assert.match(err.message, /TLS_KEY_FILE="rel\/tls"/);
    assert.match(err.message, /QUEUE_PASSWORD_FILE="rel\/queue"/);
    assert.match(err.message, /SSH_AUTHORIZED_KEYS_FILE="rel\/keys"/);
    assert.ok(!err.message.includes('(hidden)'));
  });

  it('ignores variables that are not declared', () => {
    const out = parseEnv({ A: env.str({ def: 'x' }) }, { A: 'y', OTHER: 'z' });
    assert.deepEqual(out, { A: 'y' });
  });
});

describe('env.int and env.port', () => {
  const shape = { N: env.int({ min: -5, max: 100 }) };
  const parse = (value: string): number => parseEnv(shape, { N: value }).N;

  it('accepts integers at both bounds, including negatives', () => {
    assert.equal(parse('-5'), -5);
    assert.equal(parse('100'), 100);
    assert.equal(parse('0'), 0);
  });

  it('refuses integers just outside the bounds', () => {
    for (const v of ['-6', '101']) {
      const err = expectConfigError(() => parse(v));
      assert.match(err.message, new RegExp(`N="${v}": expected an integer from -5 to 100`));
    }
  });

  it('refuses non-integers: exponent, trailing junk, decimals, hex, inner blanks, plus sign', () => {
    for (const v of ['1e3', '12abc', '1.5', '0x10', '1 2', '+5', 'abc', '--1']) {
      const err = expectConfigError(() => parse(v));
      assert.match(err.message, /N=.*expected an integer from -5 to 100/, v);
    }
  });

  it('trims surrounding blanks before checking the integer', () => {
    assert.equal(parse(' 12 '), 12);
  });

  it('refuses integers beyond the safe range even without explicit bounds', () => {
    const big = parseEnv.bind(undefined, { N: env.int({ min: 0, max: Number.MAX_SAFE_INTEGER }) });
    assert.equal(big({ N: String(Number.MAX_SAFE_INTEGER) }).N, Number.MAX_SAFE_INTEGER);
    expectConfigError(() => big({ N: '99999999999999999999' }));
  });

  it('accepts ports 1 to 65535 and refuses 0 and 65536', () => {
    const port = (v: string): number => parseEnv({ P: env.port() }, { P: v }).P;
    assert.equal(port('1'), 1);
    assert.equal(port('65535'), 65535);
    for (const v of ['0', '65536', '80/tcp']) {
      assert.match(expectConfigError(() => port(v)).message, /P=.*expected an integer from 1 to 65535/);
    }
    assert.match(expectConfigError(() => parseEnv({ P: env.port() }, {})).message, /P=\(unset\): is required \(a TCP port 1-65535\)/);
  });
});

describe('env.str, env.oneOf, env.bool, env.absPath', () => {
  it('checks a string against its pattern and says what was expected', () => {
    const shape = { ID: env.str({ pattern: /^[a-z]+$/, expected: 'lowercase letters' }) };
    assert.equal(parseEnv(shape, { ID: 'abc' }).ID, 'abc');
    assert.match(expectConfigError(() => parseEnv(shape, { ID: 'ABC' })).message, /ID="ABC": expected lowercase letters/);
  });

  it('accepts only the listed values for oneOf', () => {
    const shape = { LEVEL: env.oneOf(['error', 'info']) };
    assert.equal(parseEnv(shape, { LEVEL: 'info' }).LEVEL, 'info');
    assert.match(expectConfigError(() => parseEnv(shape, { LEVEL: 'INFO' })).message, /LEVEL="INFO": expected one of error, info/);
  });

  it('reads true/false, 1/0 and yes/no, case-insensitively, and refuses anything else', () => {
    const b = (v: string): boolean => parseEnv({ B: env.bool(false) }, { B: v }).B;
    for (const v of ['true', 'TRUE', '1', 'yes', 'Yes']) assert.equal(b(v), true, v);
    for (const v of ['false', 'False', '0', 'no', 'NO']) assert.equal(b(v), false, v);
    for (const v of ['on', 'off', 'y', '2', 'truee']) assert.match(expectConfigError(() => b(v)).message, /B=.*expected true or false/, v);
    assert.equal(parseEnv({ B: env.bool(true) }, {}).B, true);
  });

  it('accepts only absolute paths without NUL bytes', () => {
    const p = (v: string): string => parseEnv({ P: env.absPath() }, { P: v }).P;
    assert.equal(p('/etc/nonstop'), '/etc/nonstop');
    for (const v of ['etc/nonstop', './x', '~/x', '/etc/\0x']) assert.match(expectConfigError(() => p(v)).message, /P=.*expected an absolute path/, v);
  });
});

describe('env.list', () => {
  it('splits on commas, trims items and drops empty ones', () => {
    const shape = { PORTS: env.list(intItem(1, 65535), { expected: 'ports' }) };
    assert.deepEqual(parseEnv(shape, { PORTS: ' 7000, 8000 ,,9000,' }).PORTS, [7000, 8000, 9000]);
  });

  it('names the bad item of an integer list', () => {
    const shape = { PORTS: env.list(intItem(1, 65535), { expected: 'comma-separated ports' }) };
    const err = expectConfigError(() => parseEnv(shape, { PORTS: '7000,70000,8000' }));
    assert.match(err.message, /PORTS="7000,70000,8000": expected comma-separated ports \(bad item "70000"\)/);
  });

  it('names the bad item of a string list checked by a pattern', () => {
    const shape = { NAMES: env.list(strItem(/^[a-z.]+$/), { expected: 'DNS names' }) };
    assert.deepEqual(parseEnv(shape, { NAMES: 'a.example,b.example' }).NAMES, ['a.example', 'b.example']);
    assert.match(expectConfigError(() => parseEnv(shape, { NAMES: 'a.example,B_AD' })).message, /expected DNS names \(bad item "B_AD"\)/);
  });

  it('enforces the item count bounds', () => {
    const shape = { L: env.list(strItem(), { min: 2, max: 3, expected: 'names' }) };
    assert.deepEqual(parseEnv(shape, { L: 'a,b' }).L, ['a', 'b']);
    assert.match(expectConfigError(() => parseEnv(shape, { L: 'a' })).message, /L="a": expected names \(2 to 3 items\)/);
    assert.match(expectConfigError(() => parseEnv(shape, { L: 'a,b,c,d' })).message, /expected names \(2 to 3 items\)/);
  });

  it('uses its default when unset and is required without one', () => {
    assert.deepEqual(parseEnv({ L: env.list(intItem(0, 9), { def: '1,2', expected: 'digits' }) }, {}).L, [1, 2]);
    assert.match(expectConfigError(() => parseEnv({ L: env.list(intItem(0, 9), { expected: 'digits' }) }, {})).message, /L=\(unset\): is required \(digits\)/);
  });
});

describe('env.optional', () => {
  const shape = { NAME: env.optional(env.str({ pattern: /^[a-z]+$/, expected: 'a name' })) };

  it('gives undefined when unset or empty', () => {
    assert.equal(parseEnv(shape, {}).NAME, undefined);
    assert.equal(parseEnv(shape, { NAME: '' }).NAME, undefined);
  });

  it('checks a value that is present with the inner schema', () => {
    assert.equal(parseEnv(shape, { NAME: 'core' }).NAME, 'core');
    assert.match(expectConfigError(() => parseEnv(shape, { NAME: 'Core!' })).message, /NAME="Core!": expected a name/);
  });
});

describe('readSecretFile', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.cleanup());

  it('returns the file contents trimmed', () => {
    const path = join(tmp.dir, 'secret');
    writeFileSync(path, '  s3cret\n\n');
    assert.equal(readSecretFile('KNOCK_SECRET_FILE', path), 's3cret');
  });

  it('names the variable and the path when the file is missing', () => {
    const path = join(tmp.dir, 'absent');
    const err = expectConfigError(() => readSecretFile('KNOCK_SECRET_FILE', path));
    assert.equal(err.message, `KNOCK_SECRET_FILE=${JSON.stringify(path)}: cannot read (ENOENT)`);
  });

  it('refuses an empty or blank file', () => {
    const path = join(tmp.dir, 'blank');
    writeFileSync(path, ' \n\t\n');
    const err = expectConfigError(() => readSecretFile('QUEUE_PASSWORD_FILE', path));
    assert.equal(err.message, `QUEUE_PASSWORD_FILE=${JSON.stringify(path)}: file is empty`);
  });
});
