import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand, type CommandResult } from '../../support/run-command';
import { REPO_ROOT } from '../../support/stack/build';
import { tempDir } from '../../support/tmp';

/** `config` of compose.yaml from the compose on this machine (v2 plugin, else Debian's v1.29), with one env file. */
async function composeConfig(envFile: string): Promise<CommandResult> {
  const v2 = (await runCommand('/usr/bin/docker', ['compose', 'version'])).code === 0;
  // Only the file's settings count: none of ours may come in from the environment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NONSTOP_')));
  const args = ['--env-file', envFile, '-f', join(REPO_ROOT, 'compose.yaml'), 'config'];
  return v2 ? runCommand('/usr/bin/docker', ['compose', ...args], { env, cwd: REPO_ROOT }) : runCommand('docker-compose', args, { env, cwd: REPO_ROOT });
}

describe('.env.example for the compose demo', () => {
  it('states compose.yaml defaults: compose resolves the same configuration with it as with no settings at all', async () => {
    const tmp = tempDir('nonstop-env-');
    const empty = join(tmp.dir, 'empty.env');
    writeFileSync(empty, '');
    const none = await composeConfig(empty);
    tmp.cleanup();
    const example = await composeConfig(join(REPO_ROOT, '.env.example'));
    assert.equal(none.code, 0, none.stderr);
    assert.equal(example.code, 0, example.stderr);
    // The comparison has something to compare: the demo's images by their local names.
    assert.match(none.stdout, /image: nonstop\/gateway:dev\n/);
    assert.equal(example.stdout, none.stdout);
  });
});
