import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuthorizedKey } from '../../../../services/gateway/ssh/authorized-keys';
import { followAuthorizedKeys } from '../../../../services/gateway/ssh/authorized-keys-file';
import { memoryLogger } from '../../../support/logger';
import { writeKeyPair } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/** followAuthorizedKeys on a real file, rewritten as keygen (and an operator) would. */
describe('followAuthorizedKeys', function () {
  this.timeout(20_000);
  let tmp: ReturnType<typeof tempDir>;
  let stop: (() => void) | undefined;

  beforeEach(() => (tmp = tempDir('nonstop-authorized-keys-')));
  afterEach(() => {
    stop?.();
    tmp.cleanup();
  });

  it('applies a changed list, keeps the last good one when the file stops parsing, and applies an empty one', async () => {
    const a = writeKeyPair(tmp.dir, 'a', 'broker-a');
    const b = writeKeyPair(tmp.dir, 'b', 'broker-b');
    const path = join(tmp.dir, 'authorized_keys');
    writeFileSync(path, `${a.publicKey}\n${b.publicKey}\n`);
    const logs = memoryLogger();
    const applied: string[][] = [];
    stop = followAuthorizedKeys(path, (keys: readonly AuthorizedKey[]) => applied.push(keys.map((k) => k.comment)), logs.log, 100);

    writeFileSync(path, `${b.publicKey}\n`);
    await waitFor('the new list', () => applied.length === 1);
    assert.deepEqual(applied, [['broker-b']]);

    writeFileSync(path, `command="sh" ${a.publicKey}\n`);
    await waitFor('the refusal logged', () => logs.lines.some((l) => l.message === 'authorized_keys changed but cannot be used; keeping the previous keys'));
    assert.equal(applied.length, 1);

    writeFileSync(path, '# every broker revoked\n');
    await waitFor('the empty list', () => applied.length === 2);
    assert.deepEqual(applied[1], []);
    assert.ok(logs.lines.some((l) => l.message === 'authorized_keys reloaded: it holds no broker key, so no broker can log in'));
  });

  it('applies a rewrite made as it starts, before any background stat of the file could run', async () => {
    // fs.watchFile takes its first stat on libuv's thread pool and reports only later
    // differences from it, so a rewrite landing first went unseen (a CI flake, made certain
    // here): every pool thread is held opening a FIFO no one writes to until the rewrite is done.
    const a = writeKeyPair(tmp.dir, 'a', 'broker-a');
    const b = writeKeyPair(tmp.dir, 'b', 'broker-b');
    const path = join(tmp.dir, 'authorized_keys');
    writeFileSync(path, `${a.publicKey}\n`);
    const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const fifos = Array.from({ length: poolSize }, (_, i) => join(tmp.dir, `hold-${i}`));
    for (const f of fifos) execFileSync('mkfifo', [f]);
    const held = fifos.map((f) => new Promise<void>((resolve) => open(f, 'r', () => resolve())));
    const applied: string[][] = [];
    try {
      stop = followAuthorizedKeys(path, (keys: readonly AuthorizedKey[]) => applied.push(keys.map((k) => k.comment)), memoryLogger().log, 100);
      writeFileSync(path, `${b.publicKey}\n`);
    } finally {
      // Opening each FIFO for writing releases the pool thread blocked on it.
      for (const f of fifos) execFileSync('sh', ['-c', `: > '${f}'`]);
      await Promise.all(held);
    }
    await waitFor('the rewritten list', () => applied.length === 1, 5_000);
    assert.deepEqual(applied, [['broker-b']]);
  });
});
