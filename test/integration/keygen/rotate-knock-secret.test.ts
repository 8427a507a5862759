import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../support/tmp';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');

function keygen(out: string, args: string[] = []): { status: number; stderr: string } {
  const r = spawnSync(process.execPath, [KEYGEN, ...args], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker') }, encoding: 'utf8' });
  return { status: r.status ?? -1, stderr: r.stderr };
}

describe('nonstop-keygen rotate|retire knock-secret', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let gateway: string;
  let broker: string;

  beforeEach(() => {
    tmp = tempDir();
    gateway = join(tmp.dir, 'gateway/knock.secret');
    broker = join(tmp.dir, 'broker/knock-gw1.secret');
    assert.equal(keygen(tmp.dir).status, 0);
  });
  afterEach(() => tmp.cleanup());

  const read = (p: string): string => readFileSync(p, 'utf8').trim();

  it("rotate gives the gateway and its broker one new secret, each keeping its old one as .previous; retire removes both .previous and leaves gateways.json as it was", () => {
    const old = read(gateway);
    assert.equal(read(broker), old);
    const list = readFileSync(join(tmp.dir, 'broker/gateways.json'), 'utf8');

    const r = keygen(tmp.dir, ['rotate', 'knock-secret']);
    assert.equal(r.status, 0, r.stderr);
    const next = read(gateway);
    assert.notEqual(next, old);
    assert.equal(read(broker), next);
    assert.equal(read(`${gateway}.previous`), old);
    assert.equal(read(`${broker}.previous`), old);
    for (const f of [gateway, broker, `${gateway}.previous`, `${broker}.previous`]) assert.equal(statSync(f).mode & 0o077, 0, f);
    // A plain keygen run during the overlap (a stack restarted) changes none of it.
    assert.equal(keygen(tmp.dir).status, 0);
    assert.deepEqual([read(gateway), read(broker), read(`${gateway}.previous`)], [next, next, old]);

    const t = keygen(tmp.dir, ['retire', 'knock-secret']);
    assert.equal(t.status, 0, t.stderr);
    assert.equal(existsSync(`${gateway}.previous`), false);
    assert.equal(existsSync(`${broker}.previous`), false);
    assert.deepEqual([read(gateway), read(broker)], [next, next]);
    assert.equal(readFileSync(join(tmp.dir, 'broker/gateways.json'), 'utf8'), list);
  });

  it('refuses a second rotate during an overlap and a retire without one, changing nothing', () => {
    const refusedRetire = keygen(tmp.dir, ['retire', 'knock-secret']);
    assert.notEqual(refusedRetire.status, 0);
    assert.match(refusedRetire.stderr, /nothing to retire/);
    assert.equal(keygen(tmp.dir, ['rotate', 'knock-secret']).status, 0);
    const before = [read(gateway), read(broker), read(`${gateway}.previous`), read(`${broker}.previous`)];
    const refusedRotate = keygen(tmp.dir, ['rotate', 'knock-secret']);
    assert.notEqual(refusedRotate.status, 0);
    assert.match(refusedRotate.stderr, /a rotation is in progress/);
    assert.deepEqual([read(gateway), read(broker), read(`${gateway}.previous`), read(`${broker}.previous`)], before);
  });
});
