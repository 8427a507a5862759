import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeIfAbsent } from '../../../../services/common/pki/files';
import { tempDir } from '../../../support/tmp';

describe('writeIfAbsent', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.cleanup());

  it('creates the file, owner-only by default, and its missing directories owner-only', () => {
    const path = join(tmp.dir, 'a', 'b', 'key');
    assert.equal(writeIfAbsent(path, 'secret'), true);
    assert.equal(readFileSync(path, 'utf8'), 'secret');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(tmp.dir, 'a', 'b')).mode & 0o777, 0o700);
  });

  it('uses the given mode', () => {
    const path = join(tmp.dir, 'ca.crt');
    assert.equal(writeIfAbsent(path, 'cert', 0o644), true);
    assert.equal(statSync(path).mode & 0o777, 0o644);
  });

  it('never overwrites an existing file and says so', () => {
    const path = join(tmp.dir, 'key');
    writeFileSync(path, 'original', { mode: 0o640 });
    assert.equal(writeIfAbsent(path, 'replacement'), false);
    assert.equal(readFileSync(path, 'utf8'), 'original');
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.equal(writeIfAbsent(path, 'again'), false);
    assert.equal(readFileSync(path, 'utf8'), 'original');
  });

  it('throws errors other than "already exists"', () => {
    const file = join(tmp.dir, 'plain');
    writeFileSync(file, 'x');
    assert.throws(() => writeIfAbsent(join(file, 'child'), 'y'));
  });
});
