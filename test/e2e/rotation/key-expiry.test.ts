import assert from 'node:assert/strict';
import { parseKeyDates, type KeyDate } from '../../../services/common/pki/key-dates';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

/**
 * `nonstop_key_expiry_timestamp_seconds` on a real stack (issue 15.5, "expiry of every key is
 * exported"): each tier exports the notAfter keygen wrote into its key directory's
 * key-dates.json, a keygen run that changes no key changes no date, and a rotation shows in
 * the running gateway's series without a restart (the new key dated by the rotation, the
 * old one as `<file>.previous` until retire).
 */
describe('key expiry metric from keygen\'s key-dates.json on a running stack', function () {
  this.timeout(900_000);

  let stack: Stack | undefined;
  const s = (): Stack => {
    if (!stack) throw new Error('no stack');
    return stack;
  };
  /** Where compose.yaml mounts each tier's key directory (the gateway's is read-write). */
  const MANIFEST = { gateway: '/var/lib/nonstop/key-dates.json', broker: '/etc/nonstop/broker/key-dates.json', core: '/etc/nonstop/core/key-dates.json' };
  type Tier = keyof typeof MANIFEST;

  before(async () => {
    stack = await upStack();
    for (const t of ['gateway', 'broker', 'core']) await s().waitHealthy(t);
  });

  after(async () => {
    await stack?.down();
  });

  async function metricsText(tier: Tier): Promise<string> {
    const r = await s().exec(tier, ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    assert.equal(r.exitCode, 0, `${tier} metrics: ${r.stderr}`);
    return r.stdout;
  }

  /** The tier's key expiry series, {key: value}. */
  async function series(tier: Tier): Promise<Record<string, number>> {
    const text = await metricsText(tier);
    assert.match(text, /^# TYPE nonstop_key_expiry_timestamp_seconds gauge$/m, `${tier} does not define the metric`);
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^nonstop_key_expiry_timestamp_seconds\{([^}]*)\} (\S+)$/gm)) {
      const key = /(?:^|,)key="([^"]+)"/.exec(m[1]!)?.[1];
      assert.ok(key !== undefined, `a series without key=: ${m[0]}`);
      out[key] = Number(m[2]);
    }
    return out;
  }

  async function manifest(tier: Tier): Promise<{ text: string; keys: KeyDate[] }> {
    const r = await s().exec(tier, ['cat', MANIFEST[tier]]);
    assert.equal(r.exitCode, 0, `${tier}: cat ${MANIFEST[tier]}: ${r.stderr}`);
    return { text: r.stdout, keys: parseKeyDates(r.stdout).keys };
  }

  const expected = (keys: KeyDate[]): Record<string, number> => Object.fromEntries(keys.map((k) => [k.name, Math.floor(Date.parse(k.notAfter) / 1000)]));

  it('exports in each tier the notAfter keygen wrote for each key of that tier\'s directory', async () => {
    const names: Record<Tier, string[]> = { gateway: ['knock.secret', 'queue.password', 'ssh_host_ed25519_key'], broker: ['id_ed25519', 'knock-gw1.secret'], core: [] };
    for (const tier of Object.keys(MANIFEST) as Tier[]) {
      const { keys } = await manifest(tier);
      assert.deepEqual(keys.map((k) => k.name), names[tier], `${tier}: keygen dated other keys`);
      for (const k of keys) assert.equal(Date.parse(k.notAfter) - Date.parse(k.createdAt), 365 * 86_400_000, `${tier} ${k.name}: not KEY_LIFETIME_DAYS' default`);
      assert.deepEqual(await series(tier), expected(keys), tier);
    }
  });

  it('changes no date when keygen runs again on the same keys', async () => {
    const before = await Promise.all((Object.keys(MANIFEST) as Tier[]).map(async (t) => [(await manifest(t)).text, await series(t)] as const));
    await s().runAgain('keygen', {});
    const after = await Promise.all((Object.keys(MANIFEST) as Tier[]).map(async (t) => [(await manifest(t)).text, await series(t)] as const));
    assert.deepEqual(after, before);
  });

  it('shows `nonstop-keygen rotate queue-password` in the running gateway: the new password dated now, the old one as .previous until retire', async () => {
    const old = (await series('gateway'))['queue.password'];
    assert.ok(old !== undefined, 'no series for queue.password before the rotation');
    const rotatedAt = Math.floor(Date.now() / 1000);
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'rotate', 'queue-password']);
    const during = await waitFor('the rotation in the gateway\'s series', async () => {
      const now = await series('gateway');
      return now['queue.password.previous'] !== undefined ? now : undefined;
    }, 60_000, 500);
    assert.equal(during['queue.password.previous'], old, 'the old password kept its date as .previous');
    assert.ok(during['queue.password']! >= rotatedAt + 365 * 86_400, `the new password's date ${during['queue.password']} is not the rotation's + 365 days`);
    assert.deepEqual(during, expected((await manifest('gateway')).keys));
    await s().runAgain('keygen', {}, ['nonstop-keygen', 'retire', 'queue-password']);
    const retired = await waitFor('the old password gone from the gateway\'s series', async () => {
      const now = await series('gateway');
      return now['queue.password.previous'] === undefined ? now : undefined;
    }, 60_000, 500);
    assert.equal(retired['queue.password'], during['queue.password']);
  });
});
