import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { firstDataKeySet, formatDataKeyFile } from '../../../../services/common/pki/data-key-file';
import { tempDir } from '../../../support/tmp';

const CORE = join(__dirname, '..', '..', '..', '..', 'services', 'core', 'main.js');

/**
 * Starts the compiled core service with CORE_DATA_KEYS_FILE set, as the image does. Any readable
 * file stands in for the TLS files (read before the key file, parsed only later); the client CA
 * is missing on purpose, so a key file that passes is followed by a refusal naming CLIENT_CA_FILE.
 */
function startCore(keysFile: string): { status: number | null; lines: string[] } {
  const r = spawnSync(process.execPath, [CORE], {
    env: { PATH: process.env.PATH, TLS_CERT_FILE: '/etc/os-release', TLS_KEY_FILE: '/etc/os-release', CLIENT_CA_FILE: '/nonexistent/ca.crt', CORE_DATA_KEYS_FILE: keysFile, DB_ENGINE: 'ferretdb' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: r.status, lines: `${r.stdout}${r.stderr}`.trim().split('\n') };
}

describe('core refuses to start without a usable CORE_DATA_KEYS_FILE', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;

  before(() => (tmp = tempDir('nonstop-core-keys-')));
  after(() => tmp.cleanup());

  it('exits 2 with one line naming CORE_DATA_KEYS_FILE for a missing, unreadable or malformed key file', () => {
    const file = (name: string, text: string): string => {
      const p = join(tmp.dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      return p;
    };
    const aDirectory = join(tmp.dir, 'a-directory');
    mkdirSync(aDirectory);
    const cases: [string, RegExp][] = [
      [join(tmp.dir, 'absent.json'), /cannot read \(ENOENT\)/],
      [aDirectory, /cannot read \(EISDIR\)/],
      [file('text.json', 'not json'), /not JSON/],
      [file('short.json', JSON.stringify({ active: 'k1', keys: { k1: Buffer.alloc(16).toString('base64') } })), /key k1 is 16 bytes, expected 32/],
      [file('no-active.json', JSON.stringify({ active: 'k2', keys: { k1: Buffer.alloc(32).toString('base64') } })), /the active key k2 is not among the keys/],
    ];
    for (const [path, why] of cases) {
      const { status, lines } = startCore(path);
      assert.equal(status, 2, lines.join('\n'));
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, new RegExp(`^core: config error: CORE_DATA_KEYS_FILE=${JSON.stringify(path).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
      assert.match(lines[0]!, why);
    }
  });

  it('gets past the key file when it is one keygen writes (positive control: the next check, the client CA, refuses)', () => {
    const path = join(tmp.dir, 'good.json');
    writeFileSync(path, formatDataKeyFile(firstDataKeySet()), { mode: 0o600 });
    const { status, lines } = startCore(path);
    assert.equal(status, 2, lines.join('\n'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /^core: config error: CLIENT_CA_FILE=/);
  });
});
