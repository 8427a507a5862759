import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseGatewaysFile } from '../../../services/broker/config';
import { sha256Hex } from '../../../services/common/pki/digest';
import { tempDir } from '../../support/tmp';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, args: string[] = [], env: Record<string, string> = {}): { status: number; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), ...env }, encoding: 'utf8' });
  return { status: r.status ?? -1, stderr: r.stderr, stdout: r.stdout };
}

describe('nonstop-keygen rotate|retire queue-password', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let password: string;
  let previous: string;
  let gatewaysFile: string;

  beforeEach(() => {
    tmp = tempDir();
    password = join(tmp.dir, 'gateway/queue.password');
    previous = `${password}.previous`;
    gatewaysFile = join(tmp.dir, 'broker/gateways.json');
    assert.equal(keygen(tmp.dir).status, 0);
  });
  afterEach(() => tmp.cleanup());

  const hashes = (): string[] => parseGatewaysFile(gatewaysFile, readFileSync(gatewaysFile, 'utf8'))[0]!.queuePasswordSha256;
  const read = (p: string): string => readFileSync(p, 'utf8').trim();

  it('rotate keeps the old password as .previous, writes a new one, and lists both hashes (new first) in gateways.json; retire drops the old one from both', () => {
    const old = read(password);
    assert.deepEqual(hashes(), [sha256Hex(old)]);

    const r = keygen(tmp.dir, ['rotate', 'queue-password']);
    assert.equal(r.status, 0, r.stderr);
    const next = read(password);
    assert.notEqual(next, old);
    assert.equal(read(previous), old);
    assert.equal(statSync(password).mode & 0o077, 0);
    assert.equal(statSync(previous).mode & 0o077, 0);
    assert.deepEqual(hashes(), [sha256Hex(next), sha256Hex(old)]);
    // A plain keygen run during the overlap (a stack restarted) keeps both.
    assert.equal(keygen(tmp.dir).status, 0);
    assert.deepEqual(hashes(), [sha256Hex(next), sha256Hex(old)]);

    const t = keygen(tmp.dir, ['retire', 'queue-password']);
    assert.equal(t.status, 0, t.stderr);
    assert.equal(existsSync(previous), false);
    assert.equal(read(password), next);
    assert.deepEqual(hashes(), [sha256Hex(next)]);
  });

  it('refuses a second rotate during an overlap and a retire without one, with one line each and no file changed', () => {
    const refusedRetire = keygen(tmp.dir, ['retire', 'queue-password']);
    assert.notEqual(refusedRetire.status, 0);
    assert.match(refusedRetire.stderr, /nothing to retire/);

    assert.equal(keygen(tmp.dir, ['rotate', 'queue-password']).status, 0);
    const [cur, prev, list] = [read(password), read(previous), readFileSync(gatewaysFile, 'utf8')];
    const refusedRotate = keygen(tmp.dir, ['rotate', 'queue-password']);
    assert.notEqual(refusedRotate.status, 0);
    assert.match(refusedRotate.stderr, /a rotation is in progress/);
    assert.deepEqual([read(password), read(previous), readFileSync(gatewaysFile, 'utf8')], [cur, prev, list]);
  });
});
