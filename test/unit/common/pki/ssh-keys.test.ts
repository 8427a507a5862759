import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { utils, type ParsedKey } from 'ssh2';
import {
  fingerprintOfBlob,
  fingerprintOfKey,
  generateSshKeyPair,
  publicKeyBlob,
  publicKeyLine,
  sshKeyPairOf,
  SshKeyFormatError,
} from '../../../../services/common/pki/ssh-keys';
import { ed25519FromSeed, rawPublicKey, ZERO_LEADING_SEEDS } from '../../../support/ed25519-seeds';

// A public key and its fingerprint as printed by OpenSSH's `ssh-keygen -lf`.
const VECTOR_PUBLIC = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOQKB91BqCkYWLdDZpIeZfCoNvli/61yi3MR2LEt+eI/ vector@test';
const VECTOR_FINGERPRINT = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';

/** ssh2 is the independent reader here: it never wrote these keys. */
function ssh2Parse(key: string): ParsedKey {
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) throw parsed;
  return parsed;
}

function ed25519Blob(raw: Buffer): Buffer {
  const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
}

/**
 * That ssh2 reads the private key as the key of the public line: same public blob and
 * comment, and a signature made with the private half (ssh2 uses its seed) verifies
 * against the public line, so the seed and the public key belong together.
 */
function assertPairReadBySsh2(publicKey: string, privateKey: string, comment: string): void {
  const priv = ssh2Parse(privateKey);
  const pub = ssh2Parse(publicKey);
  assert.equal(priv.type, 'ssh-ed25519');
  assert.ok(priv.isPrivateKey());
  assert.equal(priv.comment, comment);
  assert.deepEqual(priv.getPublicSSH(), pub.getPublicSSH());
  const data = Buffer.from(publicKey);
  assert.ok(pub.verify(data, priv.sign(data)), 'a signature by the private key does not verify with the public key');
}

describe('generateSshKeyPair', () => {
  it('gives an OpenSSH private key and a one-line ed25519 public key with the comment', () => {
    const pair = generateSshKeyPair('broker@test');
    assert.match(pair.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/]{70}\n)+[A-Za-z0-9+/]{1,70}={0,2}\n-----END OPENSSH PRIVATE KEY-----\n$/);
    assert.match(pair.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]+=* broker@test$/);
  });

  it('writes 2000 private keys in a row that ssh2 reads as the key of their public line', () => {
    for (let i = 0; i < 2000; i++) {
      const pair = generateSshKeyPair(`k${i}`);
      assert.doesNotThrow(() => assertPairReadBySsh2(pair.publicKey, pair.privateKey, `k${i}`), `pair ${i}:\n${pair.publicKey}`);
    }
  });

  it('keeps the leading zero bytes of public keys that start with them', () => {
    for (const { seed, publicPrefix } of ZERO_LEADING_SEEDS) {
      const key = ed25519FromSeed(seed);
      const raw = rawPublicKey(key);
      // The fixture really is such a key, by node:crypto's own reckoning.
      assert.deepEqual(raw.subarray(0, publicPrefix.length), publicPrefix);
      const pair = sshKeyPairOf(key, 'zero');
      assert.deepEqual(publicKeyBlob(pair.publicKey), ed25519Blob(raw));
      assert.deepEqual(ssh2Parse(pair.privateKey).getPublicSSH(), ed25519Blob(raw));
      assertPairReadBySsh2(pair.publicKey, pair.privateKey, 'zero');
    }
  });

  it('pads the private section with 1, 2, 3... to a multiple of 8 bytes, after two equal check integers', () => {
    // Comments of every length mod 8 give every padding length from 0 to 7.
    for (let n = 0; n < 8; n++) {
      const body = Buffer.from(generateSshKeyPair('c'.repeat(n)).privateKey.split('\n').slice(1, -2).join(''), 'base64');
      let at = 'openssh-key-v1\0'.length;
      const next = (): Buffer => {
        const len = body.readUInt32BE(at);
        at += 4 + len;
        return body.subarray(at - len, at);
      };
      assert.deepEqual([next(), next(), next()].map(String), ['none', 'none', '']);
      assert.equal(body.readUInt32BE(at), 1);
      at += 4;
      next();
      const secret = next();
      assert.equal(at, body.length);
      assert.equal(secret.length % 8, 0);
      assert.deepEqual(secret.subarray(0, 4), secret.subarray(4, 8));
      // check ints, type, public, seed||public, comment, then the padding.
      const padStart = 8 + 4 + 11 + 4 + 32 + 4 + 64 + 4 + n;
      assert.deepEqual([...secret.subarray(padStart)], Array.from({ length: secret.length - padStart }, (_, i) => i + 1));
    }
  });

  it('gives a new key each time', () => {
    assert.notEqual(generateSshKeyPair('x').publicKey, generateSshKeyPair('x').publicKey);
  });

  it('refuses a comment of more than one line and a key that is not ed25519', () => {
    assert.throws(() => generateSshKeyPair('a\nssh-ed25519 AAAA evil'), TypeError);
    assert.throws(() => sshKeyPairOf(generateKeyPairSync('ed448').privateKey, 'x'), TypeError);
    assert.doesNotThrow(() => sshKeyPairOf(generateKeyPairSync('ed25519').privateKey, 'x'));
  });
});

describe('SSH fingerprints and public key lines', () => {
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

  it('gives the public line of a private key with the comment asked for', () => {
    const pair = generateSshKeyPair('old');
    assert.equal(publicKeyLine(pair.privateKey, 'new'), pair.publicKey.replace(/ old$/, ' new'));
    assert.equal(publicKeyLine(pair.publicKey, ''), pair.publicKey.replace(/ old$/, ''));
  });

  it('refuses text that is not a key it can read, and reads the same key when whole', () => {
    const pair = generateSshKeyPair('x');
    const [type, b64] = pair.publicKey.split(' ') as [string, string];
    const blob = Buffer.from(b64, 'base64');
    const raw = blob.subarray(blob.length - 32);
    const bad = [
      'hello',
      'ssh-ed25519 not-base64!',
      // The line's type and the blob's disagree.
      `ssh-rsa ${b64}`,
      // A 31-byte ed25519 key: what ssh2's generator made of keys starting with a zero byte.
      `${type} ${ed25519Blob(raw.subarray(1)).toString('base64')}`,
      // A length field running past the end.
      `${type} ${blob.subarray(0, blob.length - 1).toString('base64')}`,
      pair.privateKey.replace('-----END OPENSSH PRIVATE KEY-----', ''),
      pair.privateKey.replace(/\n[A-Za-z0-9+/]{4}/, '\nAAAA'),
      '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n',
    ];
    for (const text of bad) assert.throws(() => fingerprintOfKey(text), SshKeyFormatError, text);
    // Positive control: the same pieces, whole, are read.
    assert.equal(fingerprintOfKey(`${type} ${b64}`), fingerprintOfKey(pair.privateKey));
  });
});
