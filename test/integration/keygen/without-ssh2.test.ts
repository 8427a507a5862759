import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../support/tmp';

const DIST = join(__dirname, '..', '..', '..');
const KEYGEN = join(DIST, 'services', 'keygen', 'main.js');

/** Preloaded into node: loading ssh2 from anywhere exits the process with code 97. */
const BLOCK_SSH2 = `
const Module = require('node:module');
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'ssh2' || request.startsWith('ssh2/')) {
    process.stderr.write('ssh2 was loaded\\n');
    process.exit(97);
  }
  return load.call(this, request, ...rest);
};
`;

// Core's image carries no ssh2 yet runs nonstop-keygen: keygen must do all of its work,
// SSH keys included, without ever loading it.
describe('nonstop-keygen where ssh2 cannot be loaded (core\'s image)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  function nodeWithoutSsh2(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string } {
    const hook = join(tmp.dir, 'block-ssh2.js');
    writeFileSync(hook, BLOCK_SSH2);
    const r = spawnSync(process.execPath, ['--require', hook, ...args], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  }

  it('creates every key, SSH keys included, and the broker\'s gateways.json', () => {
    const out = join(tmp.dir, 'keys');
    const r = nodeWithoutSsh2([KEYGEN], { KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker') });
    assert.equal(r.status, 0, r.stderr);
    for (const f of ['gateway/ssh/ssh_host_ed25519_key', 'broker/id_ed25519', 'gateway/authorized_keys', 'broker/gateways.json']) assert.ok(existsSync(join(out, f)), `${f} missing`);
  });

  it('while the same block stops the gateway\'s key parser, which does need ssh2', () => {
    const r = nodeWithoutSsh2(['-e', `require(${JSON.stringify(join(DIST, 'services', 'common', 'pki', 'ssh-parse.js'))})`]);
    assert.equal(r.status, 97, r.stderr);
    assert.match(r.stderr, /ssh2 was loaded/);
  });
});
