import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseGatewaysFile } from '../../../services/broker/config';
import { fingerprintOfKey, publicKeyLine } from '../../../services/common/pki/ssh-keys';
import { tempDir } from '../../support/tmp';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, env: Record<string, string>): { status: number; stderr: string } {
  const r = spawnSync(process.execPath, [KEYGEN], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), ...env }, encoding: 'utf8' });
  return { status: r.status ?? -1, stderr: r.stderr };
}

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
    for (const f of ['pki/ca.key', 'core/server.key', 'broker/client.key', 'broker/id_ed25519', 'gateway/ssh/ssh_host_ed25519_key', 'gateway/queue.password', 'gateway/knock.secret']) {
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
    const expected = publicKeyLine(brokerKey, 'broker');
    for (const g of ['gateway', 'gateway-gw2']) assert.equal(readFileSync(join(tmp.dir, g, 'authorized_keys'), 'utf8').trim(), expected);
    const gateways = parseGatewaysFile('gateways.json', readFileSync(join(tmp.dir, 'broker/gateways.json'), 'utf8'));
    assert.deepEqual(gateways.map((g) => [g.id, g.host]), [['gw1', 'gw1.example.net'], ['gw2', 'gw2.example.net']]);
    assert.equal(gateways[1]!.hostKeyFingerprint, fingerprintOfKey(readFileSync(join(tmp.dir, 'gateway-gw2/ssh/ssh_host_ed25519_key'), 'utf8')));
    assert.notEqual(gateways[0]!.hostKeyFingerprint, gateways[1]!.hostKeyFingerprint);
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
});
