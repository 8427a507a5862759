import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReplayStore } from '../../../../services/gateway/knock/replay-store';
import { tempDir } from '../../../support/tmp';

describe('ReplayStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let path: string;
  beforeEach(() => {
    tmp = tempDir();
    path = join(tmp.dir, 'knock', 'replay.json');
  });
  afterEach(() => tmp.cleanup());

  const state = { burnt: [{ window: 57_000_000, nonce: 17, untilMs: 1_710_000_075_000 }], refuseThrough: { window: 57_000_001, untilMs: 1_710_000_105_000 } };

  it('reads back what it saved, creating its directory', () => {
    new ReplayStore(path, 30_000).save(state);
    assert.deepEqual(new ReplayStore(path, 30_000).load(), { state });
    assert.deepEqual(new ReplayStore(path, 30_000).load().state, state);
  });

  it('starts empty when there is no record yet (a new deployment)', () => {
    assert.deepEqual(new ReplayStore(path, 30_000).load(), { state: { burnt: [] } });
  });

  it('replaces the record by rename, leaving no temporary file behind', () => {
    const store = new ReplayStore(path, 30_000);
    store.save(state);
    store.save({ burnt: [] });
    assert.deepEqual(readdirSync(join(tmp.dir, 'knock')), ['replay.json']);
    assert.deepEqual(store.load(), { state: { burnt: [] } });
  });

  it('ignores a temporary file a crash left half written', () => {
    const store = new ReplayStore(path, 30_000);
    store.save(state);
    writeFileSync(`${path}.tmp`, '{"version":1,"periodMs":30000,"bur');
    assert.deepEqual(store.load(), { state });
    store.save({ burnt: [] });
    assert.deepEqual(store.load(), { state: { burnt: [] } });
  });

  it('reports a record it cannot trust as lost instead of reading it as empty', () => {
    const store = new ReplayStore(path, 30_000);
    store.save(state);
    for (const [what, text] of [
      ['torn', '{"version":1,"periodMs":30000,"burnt":[[5'],
      ['empty', ''],
      ['another shape', '{"version":1,"periodMs":30000,"burnt":[{"window":1}],"refuseThrough":null}'],
      ['another version', '{"version":2,"periodMs":30000,"burnt":[],"refuseThrough":null}'],
    ] as const) {
      writeFileSync(path, text);
      const loaded = store.load();
      assert.equal(loaded.state, undefined, what);
      assert.equal(typeof loaded.lost, 'string', what);
    }
  });

  it('reports an unreadable record as lost', () => {
    mkdirSync(path, { recursive: true });
    assert.match(new ReplayStore(path, 30_000).load().lost ?? '', /^unreadable \(EISDIR\)$/);
  });

  it('drops a record kept for another period: its window numbers name other times', () => {
    new ReplayStore(path, 30_000).save(state);
    assert.deepEqual(new ReplayStore(path, 60_000).load(), { state: { burnt: [] } });
  });

  it('throws when the record cannot be written, so the caller can refuse to open', () => {
    writeFileSync(join(tmp.dir, 'knock'), 'a file where the directory should be');
    assert.throws(() => new ReplayStore(path, 30_000).save(state), (err: NodeJS.ErrnoException) => typeof err.code === 'string');
    assert.equal(existsSync(path), false);
    assert.ok(readFileSync(join(tmp.dir, 'knock'), 'utf8').startsWith('a file'));
  });
});
