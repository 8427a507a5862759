import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { fingerprintOfKey, generateSshKeyPair, SshKeyFormatError } from '../../../../services/common/pki/ssh-keys';
import { fingerprintOfAnyKey, parseOneKey } from '../../../../services/common/pki/ssh-parse';

describe('ssh-parse (keys of every format ssh2 reads)', () => {
  it('reads a generated private key and its public line as the same key', () => {
    const pair = generateSshKeyPair('x');
    const priv = parseOneKey(pair.privateKey);
    const pub = parseOneKey(pair.publicKey);
    assert.ok(priv.isPrivateKey());
    assert.ok(!pub.isPrivateKey());
    assert.deepEqual(priv.getPublicSSH(), pub.getPublicSSH());
    assert.equal(fingerprintOfAnyKey(pair.privateKey), fingerprintOfKey(pair.publicKey));
  });

  it('fingerprints a PEM RSA key, which the node:crypto reader refuses', () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    assert.match(fingerprintOfAnyKey(pem), /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.throws(() => fingerprintOfKey(pem), SshKeyFormatError);
  });

  it('refuses text that is not a key with a typed error', () => {
    assert.throws(() => parseOneKey('hello'), SshKeyFormatError);
    assert.throws(() => fingerprintOfAnyKey('ssh-ed25519 not-base64!'), SshKeyFormatError);
  });
});
