import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TimeSpec } from '../../../../services/common/knock/sequence';
import { followKnockSecrets } from '../../../../services/gateway/knock/secret-files';
import { memoryLogger } from '../../../support/logger';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

const OLD = 'the-old-knock-secret-0123456789';
const NEW = 'the-new-knock-secret-9876543210';

/** The gateway following KNOCK_SECRET_FILE and its `.previous` on real files (what keygen rotate/retire writes). */
describe('the gateway following its knock secret files', () => {
  let tmp: ReturnType<typeof tempDir>;
  let stop: (() => void) | undefined;
  beforeEach(() => (tmp = tempDir('nonstop-knock-files-')));
  afterEach(() => {
    stop?.();
    tmp.cleanup();
  });

  it('takes both secrets at rotate, the new one alone at retire, and refuses a too-short secret with one log line, keeping what it had', async () => {
    const file = join(tmp.dir, 'knock.secret');
    writeFileSync(file, OLD);
    const spec: TimeSpec = { mode: 'time', secret: Buffer.from(OLD), length: 8, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 };
    const applied: TimeSpec[] = [];
    const { log, lines } = memoryLogger();
    stop = followKnockSecrets(file, spec, (s) => applied.push(s), log, 20);
    assert.equal(applied.length, 0, 'an unchanged file was applied');

    writeFileSync(`${file}.previous`, OLD);
    writeFileSync(file, NEW);
    await waitFor('the rotated secrets', () => applied.length === 1, 5000, 10);
    assert.deepEqual([applied[0]!.secret.toString(), applied[0]!.previousSecret?.toString()], [NEW, OLD]);

    writeFileSync(file, 'short');
    await waitFor('the refusal', () => lines.some((l) => l.message === 'knock secret file changed but cannot be used; keeping the secrets in force'), 5000, 10);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(lines.filter((l) => l.message === 'knock secret file changed but cannot be used; keeping the secrets in force').length, 1);
    assert.equal(applied.length, 1);

    writeFileSync(file, NEW);
    rmSync(`${file}.previous`);
    await waitFor('the retired secret', () => applied.length === 2, 5000, 10);
    assert.deepEqual([applied[1]!.secret.toString(), applied[1]!.previousSecret], [NEW, undefined]);
  });
});
