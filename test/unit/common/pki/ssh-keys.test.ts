import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fingerprintOfBlob, fingerprintOfKey, generateSshKeyPair, parseOneKey } from '../../../../services/common/pki/ssh-keys';

// A public key and its fingerprint as printed by OpenSSH's `ssh-keygen -lf`.
const VECTOR_PUBLIC = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOQKB91BqCkYWLdDZpIeZfCoNvli/61yi3MR2LEt+eI/ vector@test';
const VECTOR_FINGERPRINT = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';

describe('generateSshKeyPair', () => {
  it('gives an OpenSSH private key and a one-line ed25519 public key with the comment', () => {
    const pair = generateSshKeyPair('broker@test');
    assert.match(pair.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+\n-----END OPENSSH PRIVATE KEY-----\n?$/);
    assert.match(pair.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]+=* broker@test$/);
    assert.ok(!pair.publicKey.includes('\n'));
  });

  it('gives a private key whose public half is the public key', () => {
    const pair = generateSshKeyPair('x');
    const priv = parseOneKey(pair.privateKey);
    const pub = parseOneKey(pair.publicKey);
    assert.equal(priv.type, 'ssh-ed25519');
    assert.ok(priv.isPrivateKey());
    assert.ok(!pub.isPrivateKey());
    assert.deepEqual(priv.getPublicSSH(), pub.getPublicSSH());
  });

  it('gives a new key each time', () => {
    assert.notEqual(generateSshKeyPair('x').publicKey, generateSshKeyPair('x').publicKey);
  });
});

describe('SSH fingerprints', () => {
  it('matches the fingerprint OpenSSH prints for a known key', () => {
    assert.equal(fingerprintOfKey(VECTOR_PUBLIC), VECTOR_FINGERPRINT);
  });

  it('fingerprints the public key line, its blob and the private key alike', () => {
    const pair = generateSshKeyPair('x');
    const blob = Buffer.from(pair.publicKey.split(' ')[1]!, 'base64');
    const fp = fingerprintOfKey(pair.publicKey);
    assert.equal(fingerprintOfBlob(blob), fp);
    assert.equal(fingerprintOfKey(pair.privateKey), fp);
    assert.equal(fingerprintOfKey(Buffer.from(pair.privateKey)), fp);
  });

  it('is SHA256: followed by 43 unpadded base64 characters of the blob digest', () => {
    const blob = Buffer.from('any blob');
    const fp = fingerprintOfBlob(blob);
    assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.equal(Buffer.from(fp.slice(7), 'base64').toString('hex'), createHash('sha256').update(blob).digest('hex'));
  });

  it('differs between keys', () => {
    assert.notEqual(fingerprintOfKey(generateSshKeyPair('a').publicKey), fingerprintOfKey(generateSshKeyPair('a').publicKey));
  });

  it('refuses text that is not a key', () => {
    assert.throws(() => fingerprintOfKey('ssh-ed25519 not-base64!'), /cannot parse key/);
    assert.throws(() => parseOneKey('hello'), /cannot parse key/);
  });
});
