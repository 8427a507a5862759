import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenChangeNotSignalledError } from '../../../../services/core/auth/change-not-signalled-error';
import { TokenGeneration, tokenGenerationPath } from '../../../../services/core/auth/token-generation';
import { tempDir } from '../../../support/tmp';

describe('TokenGeneration', () => {
  let tmp: { dir: string; cleanup: () => void };
  let path: string;

  beforeEach(() => {
    tmp = tempDir('nonstop-generation-');
    path = tokenGenerationPath(tmp.dir);
  });

  afterEach(() => tmp.cleanup());

  it('keeps its epoch while the file is unchanged and moves it on every change, however close together', () => {
    const service = new TokenGeneration(path);
    service.create();
    const admin = new TokenGeneration(path);
    const first = service.epoch();
    assert.equal(typeof first, 'number');
    assert.equal(service.epoch(), first);
    const seen = new Set([first]);
    // Back to back, within one tick of the file system's clock: the length still differs.
    for (let i = 0; i < 20; i++) {
      admin.bump();
      const e = service.epoch();
      assert.ok(!seen.has(e), `bump ${i} did not move the epoch`);
      seen.add(e);
      assert.equal(service.epoch(), e);
    }
    assert.equal(statSync(path).size, 20);
  });

  it('gives no epoch while the file is missing, and a new one when it is back', () => {
    const service = new TokenGeneration(path);
    assert.equal(service.epoch(), undefined);
    service.create();
    const e1 = service.epoch();
    assert.equal(typeof e1, 'number');
    unlinkSync(path);
    assert.equal(service.epoch(), undefined);
    service.create();
    const e2 = service.epoch();
    assert.equal(typeof e2, 'number');
    assert.notEqual(e2, e1);
  });

  it('moves the epoch when the file is replaced by one of the same length', () => {
    const service = new TokenGeneration(path);
    writeFileSync(path, '+');
    const before = service.epoch();
    const other = join(tmp.dir, 'other');
    writeFileSync(other, '+');
    renameSync(other, path);
    assert.equal(statSync(path).size, 1);
    assert.notEqual(service.epoch(), before);
  });

  it('keeps the count a previous service left when it creates the file at start', () => {
    const generation = new TokenGeneration(path);
    generation.create();
    generation.bump();
    generation.bump();
    generation.create();
    assert.equal(readFileSync(path, 'utf8'), '++');
  });

  it('refuses to signal, creating nothing, where no service made the file', () => {
    const admin = new TokenGeneration(path);
    assert.throws(() => admin.bump(), (err: unknown) => err instanceof TokenChangeNotSignalledError && err.path === path && err.code === 'token_change_not_signalled');
    assert.equal(existsSync(path), false);
    // Positive control: the same call succeeds once the service has made the file.
    new TokenGeneration(path).create();
    admin.bump();
    assert.equal(statSync(path).size, 1);
  });
});
