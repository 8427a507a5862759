import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FollowedFile } from '../../../../services/common/config/followed-file';
import { tempDir } from '../../../support/tmp';

describe('FollowedFile', () => {
  let tmp: ReturnType<typeof tempDir>;
  let path: string;
  let changes: string[];
  let errors: string[];
  const follow = (initial?: string): FollowedFile =>
    new FollowedFile(path, { changed: (t) => changes.push(t), unreadable: (e) => errors.push(e.code ?? '?') }, initial);

  beforeEach(() => {
    tmp = tempDir();
    path = join(tmp.dir, 'list.json');
    changes = [];
    errors = [];
  });
  afterEach(() => tmp.cleanup());

  it('reports a new text once, however many checks see it, and each later change once', () => {
    writeFileSync(path, 'one');
    const f = follow();
    f.check();
    f.check();
    writeFileSync(path, 'two');
    f.check();
    f.check();
    assert.deepEqual(changes, ['one', 'two']);
  });

  it('reports nothing while the file holds the text the service started from, and a replacement by rename', () => {
    writeFileSync(path, 'start');
    const f = follow('start');
    f.check();
    assert.deepEqual(changes, []);
    writeFileSync(`${path}.tmp`, 'renamed in');
    renameSync(`${path}.tmp`, path);
    f.check();
    assert.deepEqual(changes, ['renamed in']);
  });

  it('reports the same text again after forget()', () => {
    writeFileSync(path, 'same');
    const f = follow('same');
    f.check();
    f.forget();
    f.check();
    assert.deepEqual(changes, ['same']);
  });

  it('reports an unreadable file once until it can be read, and then only a text that differs', () => {
    writeFileSync(path, 'kept');
    const f = follow('kept');
    rmSync(path);
    f.check();
    f.check();
    assert.deepEqual(errors, ['ENOENT']);
    writeFileSync(path, 'kept');
    f.check();
    assert.deepEqual(changes, [], 'the same text back is no change');
    rmSync(path);
    f.check();
    assert.deepEqual(errors, ['ENOENT', 'ENOENT'], 'missing again after being readable is reported again');
  });

  it('checks on its timer until stopped', async () => {
    writeFileSync(path, 'a');
    const f = follow('a');
    f.start(20);
    writeFileSync(path, 'b');
    const deadline = Date.now() + 5000;
    while (changes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    f.stop();
    assert.deepEqual(changes, ['b']);
    writeFileSync(path, 'c');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(changes, ['b'], 'a stopped follower still reported a change');
  });
});
