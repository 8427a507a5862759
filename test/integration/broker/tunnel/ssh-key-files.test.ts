import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerSshKeys } from '../../../../services/broker/tunnel/ssh-keys';
import { generateSshKeyPair } from '../../../../services/common/pki/ssh-keys';
import { followHostKey } from '../../../../services/gateway/ssh/host-key-file';
import { memoryLogger } from '../../../support/logger';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/**
 * The files each side of an SSH key rotation follows, on a real file system: the broker's
 * SSH_KEY_FILE with its `.previous`, and the gateway's SSH_HOST_KEY_FILE. A rewrite is
 * applied, a file that holds no usable key is refused with one log line naming it while the
 * key in use is kept, and a `.previous` is optional.
 */
describe('SSH key files followed while the services run', () => {
  let tmp: ReturnType<typeof tempDir>;
  let logs: ReturnType<typeof memoryLogger>;
  beforeEach(() => {
    tmp = tempDir('nonstop-ssh-key-files-');
    logs = memoryLogger();
  });
  afterEach(() => tmp.cleanup());

  const lines = (message: string) => logs.lines.filter((l) => l.message === message);

  it('the broker: current key alone, then [new, previous] after a rotate, then the new one alone after retire; a bad rewrite is refused and the keys kept', () => {
    const path = join(tmp.dir, 'id_ed25519');
    const oldKey = generateSshKeyPair('broker').privateKey;
    const newKey = generateSshKeyPair('broker').privateKey;
    writeFileSync(path, oldKey);
    let changes = 0;
    const keys = new BrokerSshKeys(path, oldKey, logs.log, () => changes++);
    assert.deepEqual(keys.current(), [oldKey]);

    writeFileSync(`${path}.previous`, oldKey);
    writeFileSync(path, newKey);
    keys.check();
    assert.deepEqual(keys.current(), [newKey, oldKey]);
    assert.equal(changes, 1);
    assert.equal(lines('ssh keys reloaded').length, 1);

    writeFileSync(path, 'not a key\n');
    keys.check();
    keys.check();
    assert.deepEqual(keys.current(), [newKey, oldKey], 'a file without a usable key changes nothing');
    assert.equal(changes, 1);
    const refused = lines('ssh key file changed but cannot be used; keeping the keys in use');
    assert.equal(refused.length, 1, 'refused once, not on every check');
    assert.equal(refused[0]!.path, path);

    writeFileSync(path, newKey);
    rmSync(`${path}.previous`);
    keys.check();
    assert.deepEqual(keys.current(), [newKey]);
    assert.equal(changes, 2);
  });

  it('the broker: started during an overlap, it holds both keys from the start', () => {
    const path = join(tmp.dir, 'id_ed25519');
    const oldKey = generateSshKeyPair('broker').privateKey;
    const newKey = generateSshKeyPair('broker').privateKey;
    writeFileSync(path, newKey);
    writeFileSync(`${path}.previous`, oldKey);
    const keys = new BrokerSshKeys(path, newKey, logs.log, () => assert.fail('no change at start'));
    assert.deepEqual(keys.current(), [newKey, oldKey]);
  });

  it('the gateway: a rewritten host key file is applied, one that holds no private key is refused with one line and the key kept', async () => {
    const path = join(tmp.dir, 'ssh_host_ed25519_key');
    const first = generateSshKeyPair('gw').privateKey;
    const second = generateSshKeyPair('gw').privateKey;
    writeFileSync(path, first);
    const applied: string[] = [];
    const stop = followHostKey(path, first, (k) => applied.push(k), logs.log, 20);
    try {
      writeFileSync(path, second);
      await waitFor('the new key applied', () => applied.length === 1, 5000, 10);
      assert.equal(applied[0], second);
      assert.equal(lines('ssh host key reloaded: new connections get it').length, 1);
      writeFileSync(path, generateSshKeyPair('gw').publicKey);
      await waitFor('the public key refused', () => lines('ssh host key file changed but cannot be used; keeping the host key in use').length === 1, 5000, 10);
      assert.deepEqual(applied, [second]);
    } finally {
      stop();
    }
  });
});
