import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseGatewaysFile } from '../../../services/broker/config';
import { fingerprintOfBlob, fingerprintOfKey } from '../../../services/common/pki/ssh-keys';
import { parseAuthorizedKeys } from '../../../services/gateway/ssh/authorized-keys';
import { tempDir } from '../../support/tmp';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, args: string[] = []): { status: number; stderr: string } {
  const r = spawnSync(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), BROKER_FROM: '10.0.0.0/8' }, encoding: 'utf8' });
  return { status: r.status ?? -1, stderr: r.stderr };
}

describe('nonstop-keygen rotate|retire gateway-host-key and broker-key (files on disk)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  const file = (p: string): string => join(tmp.dir, p);
  const fp = (p: string): string => fingerprintOfKey(readFileSync(file(p), 'utf8'));
  const pinned = (): string[] => parseGatewaysFile('gateways.json', readFileSync(file('broker/gateways.json'), 'utf8'))[0]!.hostKeyFingerprints;
  const authorized = () => parseAuthorizedKeys(readFileSync(file('gateway/authorized_keys'), 'utf8'));

  beforeEach(() => {
    tmp = tempDir();
    assert.equal(keygen(tmp.dir).status, 0);
  });
  afterEach(() => tmp.cleanup());

  it('gateway-host-key: rotate pins new and old (new first) and moves the old key to .previous; retire pins the new one alone; each refuses out of turn and a plain keygen run keeps the overlap', () => {
    const HOST = 'gateway/ssh/ssh_host_ed25519_key';
    const old = fp(HOST);
    assert.deepEqual(pinned(), [old]);
    const refusedRetire = keygen(tmp.dir, ['retire', 'gateway-host-key']);
    assert.notEqual(refusedRetire.status, 0);
    assert.match(refusedRetire.stderr, /nothing to retire/);

    assert.equal(keygen(tmp.dir, ['rotate', 'gateway-host-key']).status, 0);
    const next = fp(HOST);
    assert.notEqual(next, old);
    assert.equal(fp(`${HOST}.previous`), old);
    assert.deepEqual(pinned(), [next, old]);
    // Another rotation during the overlap would lose the key the brokers' tunnels rest on.
    const refusedRotate = keygen(tmp.dir, ['rotate', 'gateway-host-key']);
    assert.notEqual(refusedRotate.status, 0);
    assert.match(refusedRotate.stderr, /rotation is in progress/);
    assert.equal(fp(HOST), next);
    // The ordinary run (a new broker, a restart) derives the same overlap.
    assert.equal(keygen(tmp.dir).status, 0);
    assert.deepEqual(pinned(), [next, old]);

    assert.equal(keygen(tmp.dir, ['retire', 'gateway-host-key']).status, 0);
    assert.equal(existsSync(file(`${HOST}.previous`)), false);
    assert.deepEqual(pinned(), [next]);
  });

  it('broker-key: rotate authorizes old and new with the same restrictions and moves the old key to .previous; retire drops the old one; revoke-broker removes both', () => {
    const KEY = 'broker/id_ed25519';
    const old = fp(KEY);
    assert.deepEqual(authorized().map((k) => fingerprintOfBlob(k.key.getPublicSSH())), [old]);
    assert.equal(keygen(tmp.dir, ['rotate', 'broker-key']).status, 0);
    const next = fp(KEY);
    assert.notEqual(next, old);
    assert.equal(fp(`${KEY}.previous`), old);
    const during = authorized();
    assert.deepEqual(
      during.map((k) => fingerprintOfBlob(k.key.getPublicSSH())),
      [next, old],
    );
    for (const k of during) {
      assert.equal(k.comment, 'broker');
      assert.equal(k.options.from?.text, '10.0.0.0/8');
      assert.deepEqual(k.options.permitListen, during[0]!.options.permitListen);
    }
    const refusedRotate = keygen(tmp.dir, ['rotate', 'broker-key']);
    assert.notEqual(refusedRotate.status, 0);
    assert.match(refusedRotate.stderr, /rotation is in progress/);
    // The ordinary run keeps the overlap (brokers.json remembers the previous key).
    assert.equal(keygen(tmp.dir).status, 0);
    assert.equal(authorized().length, 2);

    assert.equal(keygen(tmp.dir, ['retire', 'broker-key']).status, 0);
    assert.equal(existsSync(file(`${KEY}.previous`)), false);
    assert.deepEqual(authorized().map((k) => fingerprintOfBlob(k.key.getPublicSSH())), [next]);
    assert.match(keygen(tmp.dir, ['retire', 'broker-key']).stderr, /nothing to retire/);

    // During an overlap, revoking the broker takes both of its keys off the gateway.
    assert.equal(keygen(tmp.dir, ['rotate', 'broker-key']).status, 0);
    assert.equal(authorized().length, 2);
    assert.equal(keygen(tmp.dir, ['revoke-broker', 'broker']).status, 0);
    assert.deepEqual(authorized(), []);
  });
});
