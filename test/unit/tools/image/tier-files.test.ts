import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TIER_ENTRIES, UnresolvedModuleError, packageClosure, packageOf, traceModules, type Lockfile, type Tier } from '../../../../tools/image/tier-files';

const PROJECT = join(__dirname, '..', '..', '..', '..', '..');
const DIST = join(PROJECT, 'dist');

function fromMap(files: Record<string, string>): (p: string) => string | undefined {
  return (p) => files[p];
}

describe('tier files: modules traced from the entry points', () => {
  it('follows relative requires, index files and parent paths, and collects package names', () => {
    const files = {
      'services/a/main.js': 'const x = require("./lib");\nconst y = require("../common/util");\nconst n = require("node:fs");\nconst p = require("path");',
      'services/a/lib/index.js': 'require("ioredis"); require("ajv/dist/2020");',
      'services/common/util.js': 'require("@peculiar/x509"); require("@peculiar/x509/lib");',
      'services/b/main.js': 'require("mongodb");',
    };
    const out = traceModules(['services/a/main.js'], fromMap(files));
    assert.deepEqual(out.modules, ['services/a/lib/index.js', 'services/a/main.js', 'services/common/util.js']);
    assert.deepEqual(out.packages, ['@peculiar/x509', 'ajv', 'ioredis']);
  });

  it('refuses a relative require that resolves to no module, naming both', () => {
    assert.throws(() => traceModules(['m.js'], fromMap({ 'm.js': 'require("./gone")' })), (e: unknown) => e instanceof UnresolvedModuleError && /m\.js requires \.\/gone/.test(e.message));
  });

  it('treats builtins, with or without node:, as no package', () => {
    assert.equal(packageOf('node:crypto'), undefined);
    assert.equal(packageOf('crypto'), undefined);
    assert.equal(packageOf('fs/promises'), undefined);
    assert.equal(packageOf('ssh2'), 'ssh2');
  });
});

describe('tier files: package closure from the lockfile', () => {
  const lock: Lockfile = {
    packages: {
      '': {},
      'node_modules/a': { dependencies: { b: '^1', c: '^1' }, optionalDependencies: { 'other-platform': '1' } },
      'node_modules/b': {},
      'node_modules/a/node_modules/c': { dependencies: { b: '^1' } },
      'node_modules/c': { dependencies: { d: '^1' } },
      'node_modules/d': {},
      'node_modules/unused': {},
    },
  };

  it('resolves nested copies first, as Node does, and skips optional packages the lockfile lacks', () => {
    assert.deepEqual(packageClosure(lock, ['a']), ['node_modules/a', 'node_modules/a/node_modules/c', 'node_modules/b']);
    assert.deepEqual(packageClosure(lock, ['c']), ['node_modules/c', 'node_modules/d']);
  });

  it('refuses a required package the lockfile lacks', () => {
    assert.throws(() => packageClosure(lock, ['missing']), UnresolvedModuleError);
  });
});

describe('tier files: what each tier of this project ships', () => {
  const lock = JSON.parse(readFileSync(join(PROJECT, 'package-lock.json'), 'utf8')) as Lockfile;
  const read = (p: string): string | undefined => (existsSync(join(DIST, p)) ? readFileSync(join(DIST, p), 'utf8') : undefined);
  const ship = (tier: Tier) => {
    const traced = traceModules(TIER_ENTRIES[tier], read);
    return { ...traced, closure: packageClosure(lock, traced.packages) };
  };

  it('ships the gateway without the database driver or the validator', () => {
    const g = ship('gateway');
    assert.ok(g.closure.includes('node_modules/ssh2'), 'positive control: the gateway needs ssh2');
    assert.ok(!g.closure.includes('node_modules/mongodb'));
    assert.ok(!g.modules.some((m) => m.startsWith('services/core/') || m.startsWith('services/broker/')));
  });

  it('ships the broker without the database driver or express', () => {
    const b = ship('broker');
    assert.ok(b.closure.includes('node_modules/ioredis'), 'positive control: the broker needs ioredis');
    assert.ok(!b.closure.includes('node_modules/mongodb'));
    assert.ok(!b.closure.includes('node_modules/express'));
  });

  it('ships core, with its operator tools, without ssh2 or ioredis', () => {
    const c = ship('core');
    assert.ok(c.closure.includes('node_modules/mongodb'), 'positive control: core needs the driver');
    assert.ok(c.modules.includes('services/keygen/main.js') && c.modules.includes('services/core/admin/cli.js'));
    assert.ok(!c.closure.includes('node_modules/ssh2'), `core requires ssh2 through ${c.modules.join(', ')}`);
    assert.ok(!c.closure.includes('node_modules/ioredis'));
  });
});
