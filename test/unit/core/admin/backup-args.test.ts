import assert from 'node:assert/strict';
import { parseBackupArgs, parseRestoreArgs } from '../../../../services/core/admin/backup';
import { UsageError } from '../../../../services/core/admin/args';

describe('nonstop-admin backup and restore arguments', () => {
  it('backup: stdout by default, --out FILE, nothing else', () => {
    assert.deepEqual(parseBackupArgs([]), {});
    assert.deepEqual(parseBackupArgs(['--out', '/backups/core.ndjson']), { out: '/backups/core.ndjson' });
    assert.throws(() => parseBackupArgs(['--merge']), UsageError);
    assert.throws(() => parseBackupArgs(['--in', 'x']), UsageError);
    assert.throws(() => parseBackupArgs(['file']), UsageError);
  });

  it('restore: stdin by default, --in FILE, --merge and --check in any order, nothing else', () => {
    assert.deepEqual(parseRestoreArgs([]), { merge: false, check: false });
    assert.deepEqual(parseRestoreArgs(['--merge', '--in', 'b.ndjson', '--check']), { in: 'b.ndjson', merge: true, check: true });
    assert.throws(() => parseRestoreArgs(['--out', 'x']), UsageError);
    assert.throws(() => parseRestoreArgs(['--in']), UsageError);
    assert.throws(() => parseRestoreArgs(['--force']), UsageError);
  });
});
