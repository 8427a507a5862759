import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprintOfKey, generateSshKeyPair, publicKeyLine, sshKeyPairOf, type SshKeyPair } from '../../../../services/common/pki/ssh-keys';
import { ed25519FromSeed, ZERO_LEADING_SEEDS } from '../../../support/ed25519-seeds';
import { opensshFingerprint, sshKeygen, sshKeygenOk, type Run } from '../../../support/ssh-keygen';
import { tempDir } from '../../../support/tmp';

describe('ssh-keys with OpenSSH ssh-keygen as the peer', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  /** Writes a pair as `<name>` (0600, as ssh-keygen insists) and `<name>.line`; no `<name>.pub` that ssh-keygen could read instead. */
  function write(name: string, pair: SshKeyPair): { priv: string; line: string } {
    const priv = join(tmp.dir, name);
    writeFileSync(priv, pair.privateKey, { mode: 0o600 });
    writeFileSync(`${priv}.line`, `${pair.publicKey}\n`);
    return { priv, line: `${priv}.line` };
  }

  it('reads generated private keys (some with zero-leading public keys) as the key of their public line, with the same fingerprint', () => {
    const pairs = [
      ...ZERO_LEADING_SEEDS.map(({ seed }, i) => sshKeyPairOf(ed25519FromSeed(seed), `zero-${i}`)),
      ...Array.from({ length: 30 }, (_, i) => generateSshKeyPair(`broker-${i}@nonstop`)),
    ];
    pairs.forEach((pair, i) => {
      const f = write(`k${i}`, pair);
      assert.equal(sshKeygenOk(['-y', '-f', f.priv]).trim(), pair.publicKey);
      const fp = opensshFingerprint(f.line);
      assert.equal(fingerprintOfKey(pair.publicKey), fp);
      assert.equal(fingerprintOfKey(pair.privateKey), fp);
    });
  });

  it('signs with a generated key so that OpenSSH verifies against its public line, and not against another key', () => {
    const pairs = [...ZERO_LEADING_SEEDS.map(({ seed }) => sshKeyPairOf(ed25519FromSeed(seed), 'zero')), generateSshKeyPair('fresh')];
    const other = generateSshKeyPair('other');
    pairs.forEach((pair, i) => {
      const f = write(`s${i}`, pair);
      // One message per key: ssh-keygen leaves an existing .sig in place.
      const message = join(tmp.dir, `message-${i}`);
      writeFileSync(message, 'nonstop key check\n');
      // OpenSSH signs with the 64-byte seed||public half, so a public key that does not belong
      // to the seed gives a signature that fails to verify.
      sshKeygenOk(['-Y', 'sign', '-f', f.priv, '-n', 'nonstop-test', message]);
      const signers = (pub: string): string => {
        const path = join(tmp.dir, `allowed-${i}`);
        writeFileSync(path, `signer ${pub}\n`);
        return path;
      };
      const verify = (pub: string): Run => sshKeygen(['-Y', 'verify', '-f', signers(pub), '-I', 'signer', '-n', 'nonstop-test', '-s', `${message}.sig`], readFileSync(message, 'utf8'));
      const good = verify(pair.publicKey);
      assert.equal(good.status, 0, good.stderr);
      assert.match(good.stdout, /^Good "nonstop-test" signature for signer with ED25519 key SHA256:/);
      assert.equal(verify(other.publicKey).status, 255);
    });
  });

  for (const [type, passphrase] of [['ed25519', ''], ['ed25519', 'a passphrase'], ['ecdsa', ''], ['rsa', '']] as const) {
    it(`reads the public key of an OpenSSH ${type} private key ssh-keygen wrote${passphrase ? ' with a passphrase' : ''}`, () => {
      const path = join(tmp.dir, `id_${type}`);
      sshKeygenOk(['-q', '-t', type, '-N', passphrase, '-C', 'from ssh-keygen', '-f', path]);
      const priv = readFileSync(path, 'utf8');
      assert.match(priv, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      assert.equal(fingerprintOfKey(priv), opensshFingerprint(`${path}.pub`));
      assert.equal(publicKeyLine(priv, 'from ssh-keygen'), readFileSync(`${path}.pub`, 'utf8').trim());
    });
  }
});
