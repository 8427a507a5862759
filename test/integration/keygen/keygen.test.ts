import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseGatewaysFile } from '../../../services/broker/config';
import { certificateCommonName, certificateSerial, readCrl } from '../../../services/common/pki/crl';
import { fingerprintOfKey, publicKeyBlob, publicKeyLine } from '../../../services/common/pki/ssh-keys';
import { parseBrokerNames } from '../../../services/core/http/client-identity';
import { parseAuthorizedKeys } from '../../../services/gateway/ssh/authorized-keys';
import { tempDir } from '../../support/tmp';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, env: Record<string, string>, args: string[] = []): { status: number; stderr: string } {
  const r = spawnSync(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), ...env }, encoding: 'utf8' });
  return { status: r.status ?? -1, stderr: r.stderr };
}

/** The gateway's reading of an authorized_keys file keygen wrote. */
const authorizedKeys = (dir: string, gateway = 'gateway') => parseAuthorizedKeys(readFileSync(join(dir, gateway, 'authorized_keys'), 'utf8'));
const coreBrokers = (dir: string): string[] => [...parseBrokerNames(readFileSync(join(dir, 'core/brokers'), 'utf8'))];
const revokedSerials = async (dir: string): Promise<string[]> => [...(await readCrl(readFileSync(join(dir, 'core/ca.crl'), 'utf8'), readFileSync(join(dir, 'core/ca.crt'), 'utf8')))];
const serialOf = (dir: string, broker: string): string => certificateSerial(readFileSync(join(dir, broker, 'client.crt'), 'utf8'));

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[p] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

describe('nonstop-keygen (the compose one-shot and the fleet tool)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('creates every tier\'s files once and changes nothing when run again', () => {
    assert.equal(keygen(tmp.dir, {}).status, 0);
    const first = snapshot(tmp.dir);
    for (const f of ['pki/ca.key', 'core/server.key', 'core/data-keys.json', 'broker/client.key', 'broker/id_ed25519', 'gateway/ssh/ssh_host_ed25519_key', 'gateway/queue.password', 'gateway/knock.secret']) {
      const path = join(tmp.dir, f);
      assert.ok(first[path], `${f} missing`);
      assert.equal(statSync(path).mode & 0o077, 0, `${f} is readable by others`);
    }
    assert.equal(keygen(tmp.dir, {}).status, 0);
    assert.deepEqual(snapshot(tmp.dir), first);
  });

  it('adds a second gateway of a fleet: same CA and broker key, its own keys, both in gateways.json', () => {
    assert.equal(keygen(tmp.dir, { GATEWAY_ID: 'gw1', GATEWAY_HOST: 'gw1.example.net' }).status, 0);
    const ca = readFileSync(join(tmp.dir, 'pki/ca.crt'), 'utf8');
    const r = keygen(tmp.dir, { GATEWAY_ID: 'gw2', GATEWAY_HOST: 'gw2.example.net', KEYGEN_GATEWAY_SUBDIR: 'gateway-gw2' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(tmp.dir, 'pki/ca.crt'), 'utf8'), ca);
    const brokerKey = readFileSync(join(tmp.dir, 'broker/id_ed25519'), 'utf8');
    for (const g of ['gateway', 'gateway-gw2']) {
      const keys = authorizedKeys(tmp.dir, g);
      assert.deepEqual(keys.map((k) => k.comment), ['broker']);
      assert.ok(keys[0]!.key.getPublicSSH().equals(publicKeyBlob(brokerKey)));
    }
    const gateways = parseGatewaysFile('gateways.json', readFileSync(join(tmp.dir, 'broker/gateways.json'), 'utf8'));
    assert.deepEqual(gateways.map((g) => [g.id, g.host]), [['gw1', 'gw1.example.net'], ['gw2', 'gw2.example.net']]);
    assert.deepEqual(gateways[1]!.hostKeyFingerprints, [fingerprintOfKey(readFileSync(join(tmp.dir, 'gateway-gw2/ssh/ssh_host_ed25519_key'), 'utf8'))]);
    assert.notDeepEqual(gateways[0]!.hostKeyFingerprints, gateways[1]!.hostKeyFingerprints);
    assert.notEqual(gateways[0]!.queuePasswordSha256, gateways[1]!.queuePasswordSha256);
  });

  it('refuses a static knock mode without a sequence with one line naming the variable, and writes nothing', () => {
    const r = keygen(tmp.dir, { KNOCK_MODE: 'static' });
    assert.equal(r.status, 2);
    assert.match(r.stderr.trim(), /^keygen: config error: KNOCK_SEQUENCE/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.deepEqual(readdirSync(tmp.dir), []);
  });

  it("writes the gateway's knock defaults for the broker, and refuses settings under the guessing floor with one line", () => {
    assert.equal(keygen(tmp.dir, {}).status, 0);
    const [gw] = parseGatewaysFile('gateways.json', readFileSync(join(tmp.dir, 'broker/gateways.json'), 'utf8'));
    assert.ok(gw?.knock.mode === 'time');
    assert.deepEqual([gw.knock.length, gw.knock.rangeStart, gw.knock.rangeEnd], [8, 40000, 40999]);
    const other = tempDir();
    try {
      const r = keygen(other.dir, { KNOCK_LENGTH: '4' });
      assert.equal(r.status, 2);
      assert.match(r.stderr.trim(), /^keygen: config error: KNOCK_LENGTH=4 with KNOCK_PORT_RANGE="40000-40999": .*the floor is 2\^64/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.deepEqual(readdirSync(other.dir), []);
    } finally {
      other.cleanup();
    }
  });

  describe('one identity per broker', () => {
    it('gives a second broker its own key pair and client certificate, authorized on the gateway and known to core', async () => {
      assert.equal(keygen(tmp.dir, {}).status, 0);
      const r = keygen(tmp.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' });
      assert.equal(r.status, 0, r.stderr);
      assert.notEqual(readFileSync(join(tmp.dir, 'broker/id_ed25519'), 'utf8'), readFileSync(join(tmp.dir, 'broker-2/id_ed25519'), 'utf8'));
      assert.deepEqual(['broker', 'broker-2'].map((b) => certificateCommonName(readFileSync(join(tmp.dir, b, 'client.crt'), 'utf8'))), ['broker', 'broker-2']);
      assert.notEqual(serialOf(tmp.dir, 'broker'), serialOf(tmp.dir, 'broker-2'));

      const keys = authorizedKeys(tmp.dir);
      assert.deepEqual(keys.map((k) => k.comment), ['broker', 'broker-2']);
      assert.ok(keys[1]!.key.getPublicSSH().equals(publicKeyBlob(readFileSync(join(tmp.dir, 'broker-2/id_ed25519'), 'utf8'))));
      for (const k of keys) {
        // Only the queue port's reverse forward on loopback, nothing else.
        assert.deepEqual([k.options.portForwarding, k.options.pty, k.options.agentForwarding, k.options.permitListen], [true, false, false, [{ host: '127.0.0.1', port: 6379 }]]);
      }
      assert.deepEqual(coreBrokers(tmp.dir), ['broker', 'broker-2']);
      assert.deepEqual(await revokedSerials(tmp.dir), []);
    });

    it("refuses to issue a broker into another broker's directory, with one line", () => {
      assert.equal(keygen(tmp.dir, {}).status, 0);
      const before = snapshot(tmp.dir);
      const r = keygen(tmp.dir, { BROKER_NAME: 'broker-2' });
      assert.equal(r.status, 2);
      assert.match(r.stderr.trim(), /^keygen: config error: KEYGEN_BROKER_SUBDIR=broker: holds the identity of broker "broker", not of BROKER_NAME=broker-2/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.deepEqual(snapshot(tmp.dir), before);
    });

    it("writes BROKER_FROM and BROKER_KEY_EXPIRY into the broker's key line, and refuses what the gateway would refuse", () => {
      const r = keygen(tmp.dir, { BROKER_FROM: '10.0.0.0/8,!10.0.0.1', BROKER_KEY_EXPIRY: '20991231Z' });
      assert.equal(r.status, 0, r.stderr);
      const [k] = authorizedKeys(tmp.dir);
      assert.equal(k!.options.from?.text, '10.0.0.0/8,!10.0.0.1');
      assert.equal(k!.options.expiresAt, Date.UTC(2099, 11, 31) / 1000);
      const fresh = tempDir();
      try {
        const bad: Record<string, string>[] = [{ BROKER_FROM: '10.0.0.1/8' }, { BROKER_FROM: '10.0.0.1" restrict' }, { BROKER_KEY_EXPIRY: '2099' }];
        for (const env of bad) {
          const r2 = keygen(fresh.dir, env);
          assert.equal(r2.status, 2, JSON.stringify(env));
          assert.match(r2.stderr, /^keygen: config error: BROKER_(FROM|KEY_EXPIRY)=/);
          assert.deepEqual(readdirSync(fresh.dir), []);
        }
      } finally {
        fresh.cleanup();
      }
    });

    it("revoke-broker puts the broker's certificate on the CRL and takes it off core's list and authorized_keys, leaving the other broker", async () => {
      assert.equal(keygen(tmp.dir, {}).status, 0);
      assert.equal(keygen(tmp.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' }).status, 0);
      const r = keygen(tmp.dir, {}, ['revoke-broker', 'broker-2']);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(await revokedSerials(tmp.dir), [serialOf(tmp.dir, 'broker-2')]);
      assert.deepEqual(coreBrokers(tmp.dir), ['broker']);
      assert.deepEqual(authorizedKeys(tmp.dir).map((k) => k.comment), ['broker']);

      // Idempotent, and the revoked name is not issued again.
      const snap = snapshot(tmp.dir);
      assert.equal(keygen(tmp.dir, {}, ['revoke-broker', 'broker-2']).status, 0);
      assert.equal(keygen(tmp.dir, {}).status, 0);
      assert.deepEqual(snapshot(tmp.dir), snap);
      const again = keygen(tmp.dir, { BROKER_NAME: 'broker-2', KEYGEN_BROKER_SUBDIR: 'broker-2' });
      assert.equal(again.status, 2);
      assert.match(again.stderr, /BROKER_NAME=broker-2: revoked at /);
      const unknown = keygen(tmp.dir, {}, ['revoke-broker', 'broker-9']);
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /no broker named "broker-9"/);
    });

    it('takes over the broker of a deployment made before brokers.json, keeping its key and certificate', async () => {
      assert.equal(keygen(tmp.dir, {}).status, 0);
      const key = readFileSync(join(tmp.dir, 'broker/id_ed25519'), 'utf8');
      const cert = readFileSync(join(tmp.dir, 'broker/client.crt'), 'utf8');
      // What an older keygen left: no broker list, no CRL, a bare authorized_keys line.
      for (const f of ['pki/brokers.json', 'core/brokers', 'core/ca.crl']) rmSync(join(tmp.dir, f));
      writeFileSync(join(tmp.dir, 'gateway/authorized_keys'), `${publicKeyLine(key, 'broker')}\n`);
      assert.equal(keygen(tmp.dir, {}).status, 0);
      assert.equal(readFileSync(join(tmp.dir, 'broker/id_ed25519'), 'utf8'), key);
      assert.equal(readFileSync(join(tmp.dir, 'broker/client.crt'), 'utf8'), cert);
      assert.deepEqual(authorizedKeys(tmp.dir).map((k) => [k.comment, k.options.portForwarding, k.options.pty]), [['broker', true, false]]);
      assert.deepEqual(coreBrokers(tmp.dir), ['broker']);
      assert.deepEqual(await revokedSerials(tmp.dir), []);
    });
  });
});
