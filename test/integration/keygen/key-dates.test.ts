import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Gauge } from 'prom-client';
import { parseEnv } from '../../../services/common/config/env';
import { followKeyDates, keyDatesFile, keyExpiryGauge } from '../../../services/common/metrics/key-expiry';
import { createRegistry } from '../../../services/common/metrics/server';
import { parseKeyDates } from '../../../services/common/pki/key-dates';
import { keygenEnv } from '../../../services/keygen/env';
import { keyLayout } from '../../../services/keygen/layout';
import { registerRotation, runRotation } from '../../../services/keygen/rotation';
import { memoryLogger, silentLogger } from '../../support/logger';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

const KEYGEN = join(__dirname, '..', '..', '..', 'services', 'keygen', 'main.js');
const DAY_S = 86_400;

function keygen(out: string, env: Record<string, string> = {}): void {
  const r = spawnSync(process.execPath, [KEYGEN], { env: { PATH: process.env.PATH, KEYGEN_OUT: out, BROKER_SECRETS_DIR: join(out, 'broker'), ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** The gauge's series as {key: seconds}. */
async function series(gauge: Gauge<'key'>): Promise<Record<string, number>> {
  return Object.fromEntries((await gauge.get()).values.map((v) => [String(v.labels.key), v.value]));
}

/** Each tier's gauge, following the manifest where the tier's own default puts it. */
function followTier(keygenFile: string, log = silentLogger()): { gauge: Gauge<'key'>; stop: () => void } {
  const gauge = keyExpiryGauge([createRegistry('test')]);
  const stop = followKeyDates(keyDatesFile(keygenFile, {}), gauge, log, 50);
  return { gauge, stop };
}

/**
 * A stand-in rotation of the gateway's queue password that does only what the shared
 * protocol does to files (old → `.previous`, new → the file; retire removes `.previous`):
 * what is tested here is that runRotation dates whatever a rotation left on disk, without
 * the rotation module knowing about key-dates.json.
 */
registerRotation('test-key-dates', {
  describe: 'test only',
  rotate({ layout }) {
    renameSync(layout.gateway.queuePassword, `${layout.gateway.queuePassword}.previous`);
    writeFileSync(layout.gateway.queuePassword, 'the-next-password', { mode: 0o600 });
    return Promise.resolve();
  },
  retire({ layout }) {
    unlinkSync(`${layout.gateway.queuePassword}.previous`);
    return Promise.resolve();
  },
});

describe('key expiry from keygen\'s key-dates.json, as each tier exports it', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  const stops: (() => void)[] = [];
  beforeEach(() => (tmp = tempDir('nonstop-key-dates-')));
  afterEach(() => {
    for (const s of stops.splice(0)) s();
    tmp.cleanup();
  });

  it('exports, in each tier, notAfter = the keygen run\'s date + KEY_LIFETIME_DAYS for exactly the keys of that tier\'s directory', async () => {
    const before = Math.floor(Date.now() / 1000);
    keygen(tmp.dir, { KEY_LIFETIME_DAYS: '90' });
    const after = Math.ceil(Date.now() / 1000);
    const L = keyLayout(tmp.dir);
    // The files each tier's service reads its default KEY_DATES_FILE beside.
    const tiers = { gateway: L.gateway.authorizedKeys, broker: L.broker.gatewaysFile, core: L.core.dataKeys };
    const expected = { gateway: ['knock.secret', 'queue.password', 'ssh_host_ed25519_key'], broker: ['id_ed25519', 'knock-gw1.secret'], core: [] as string[] };
    const paths = { 'knock.secret': L.gateway.knockSecret, 'queue.password': L.gateway.queuePassword, ssh_host_ed25519_key: L.gateway.hostKey, id_ed25519: L.broker.sshKey, 'knock-gw1.secret': L.broker.knockSecret('gw1') } as Record<string, string>;
    for (const [tier, file] of Object.entries(tiers) as [keyof typeof tiers, string][]) {
      const { gauge, stop } = followTier(file);
      stops.push(stop);
      const got = await series(gauge);
      assert.deepEqual(Object.keys(got).sort(), expected[tier], tier);
      const manifest = parseKeyDates(readFileSync(join(L[tier].dir, 'key-dates.json'), 'utf8'));
      for (const [key, value] of Object.entries(got)) {
        const entry = manifest.keys.find((k) => k.name === key)!;
        assert.equal(value, Math.floor(Date.parse(entry.notAfter) / 1000), `${tier} ${key}`);
        // The date is the run's, the lifetime KEY_LIFETIME_DAYS, and the fingerprint the file's content.
        assert.ok(value >= before + 90 * DAY_S && value <= after + 90 * DAY_S, `${tier} ${key}: ${value} not within the run + 90 days`);
        assert.equal(entry.fingerprint, `sha256:${createHash('sha256').update(readFileSync(paths[key]!)).digest('hex').slice(0, 16)}`);
      }
    }
  });

  it('changes no date when keygen runs again on the same keys (a changed KEY_LIFETIME_DAYS does, as control)', async () => {
    keygen(tmp.dir);
    const L = keyLayout(tmp.dir);
    const read = (): string[] => [L.gateway.dir, L.broker.dir, L.core.dir].map((d) => readFileSync(join(d, 'key-dates.json'), 'utf8'));
    const first = read();
    await new Promise((r) => setTimeout(r, 1100));
    keygen(tmp.dir);
    assert.deepEqual(read(), first);
    keygen(tmp.dir, { KEY_LIFETIME_DAYS: '30' });
    const shorter = parseKeyDates(read()[0]!).keys;
    const original = parseKeyDates(first[0]!).keys;
    assert.deepEqual(shorter.map((k) => k.createdAt), original.map((k) => k.createdAt));
    assert.notDeepEqual(shorter.map((k) => k.notAfter), original.map((k) => k.notAfter));
  });

  it('shows a rotation in the running tier\'s series: the new key dated now, the old one as <file>.previous with its old date, gone at retire', async () => {
    keygen(tmp.dir);
    const L = keyLayout(tmp.dir);
    const { gauge, stop } = followTier(L.gateway.authorizedKeys);
    stops.push(stop);
    const old = (await series(gauge))['queue.password'];
    assert.ok(old !== undefined);
    await new Promise((r) => setTimeout(r, 1100));
    const ctx = { layout: L, env: parseEnv(keygenEnv, { KEYGEN_OUT: tmp.dir }), log: silentLogger() };
    const rotatedAt = Math.floor(Date.now() / 1000);
    await runRotation('rotate', ['test-key-dates'], ctx);
    const during = await waitFor('the rotated key dated in the series', async () => {
      const s = await series(gauge);
      return s['queue.password.previous'] !== undefined ? s : undefined;
    }, 10_000, 50);
    assert.equal(during['queue.password.previous'], old);
    assert.ok(during['queue.password']! >= rotatedAt + 365 * DAY_S, `the new key's date ${during['queue.password']} is not the rotation's`);
    assert.ok(during['queue.password']! > old);
    await runRotation('retire', ['test-key-dates'], ctx);
    const retired = await waitFor('the old key gone from the series', async () => {
      const s = await series(gauge);
      return s['queue.password.previous'] === undefined ? s : undefined;
    }, 10_000, 50);
    assert.equal(retired['queue.password'], during['queue.password']);
  });

  it('keeps the last good dates when the manifest turns invalid (one line), and exports none with one warning when it is absent', async () => {
    keygen(tmp.dir);
    const L = keyLayout(tmp.dir);
    const manifest = join(L.gateway.dir, 'key-dates.json');
    const { log, lines } = memoryLogger();
    const { gauge, stop } = followTier(L.gateway.authorizedKeys, log);
    stops.push(stop);
    const good = await series(gauge);
    assert.equal(Object.keys(good).length, 3);
    writeFileSync(manifest, '{"version": 1, "keys": [');
    await waitFor('the refusal logged', () => lines.some((l) => l.message === 'key dates refused; last good kept'), 5000, 20);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await series(gauge), good);
    assert.equal(lines.filter((l) => l.message === 'key dates refused; last good kept').length, 1);
    rmSync(manifest);
    await waitFor('the absence logged', () => lines.some((l) => l.message === 'no key dates file; key expiry not exported'), 5000, 20);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await series(gauge), {});
    assert.equal(lines.filter((l) => l.message === 'no key dates file; key expiry not exported').length, 1);
    assert.ok(!existsSync(manifest));
  });
});
