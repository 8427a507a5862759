import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprintOfAnyKey, parseOneKey } from '../../../../services/common/pki/ssh-parse';
import { opensshFingerprint, sshKeygenOk } from '../../../support/ssh-keygen';
import { tempDir } from '../../../support/tmp';

describe('ssh-parse with OpenSSH ssh-keygen as the peer', () => {
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  for (const type of ['rsa', 'ecdsa'] as const) {
    it(`fingerprints a ${type} key written in PEM, as OpenSSH does`, () => {
      const path = join(tmp.dir, `id_${type}`);
      sshKeygenOk(['-q', '-t', type, '-m', 'PEM', '-N', '', '-C', 'operator', '-f', path]);
      const priv = readFileSync(path, 'utf8');
      assert.match(priv, /^-----BEGIN (RSA|EC) PRIVATE KEY-----\n/);
      assert.ok(parseOneKey(priv).isPrivateKey());
      assert.equal(fingerprintOfAnyKey(priv), opensshFingerprint(`${path}.pub`));
    });
  }
});
