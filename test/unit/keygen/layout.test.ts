import assert from 'node:assert/strict';
import { relative, sep } from 'node:path';
import { keyLayout } from '../../../services/keygen/layout';

const ROOT = '/var/lib/nonstop/keys';

/** Every file path of one tier's section (functions called with a sample gateway id). */
function files(section: Record<string, unknown>): string[] {
  return Object.entries(section)
    .filter(([name]) => name !== 'dir')
    .map(([, v]) => (typeof v === 'function' ? (v as (id: string) => string)('gw-1') : (v as string)));
}

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep);
}

describe('keyLayout', () => {
  const L = keyLayout(ROOT);
  const tiers = ['pki', 'gateway', 'broker', 'core'] as const;

  it('gives each tier its own directory under the root', () => {
    assert.deepEqual(
      tiers.map((t) => L[t].dir),
      tiers.map((t) => `${ROOT}/${t}`),
    );
  });

  it("keeps every tier's files inside that tier's directory and no other", () => {
    for (const tier of tiers) {
      const paths = files(L[tier]);
      assert.ok(paths.length > 0, tier);
      for (const p of paths) {
        assert.ok(inside(L[tier].dir, p), `${tier}: ${p}`);
        for (const other of tiers.filter((t) => t !== tier)) assert.ok(!inside(L[other].dir, p), `${p} is also under ${other}`);
      }
    }
  });

  it('keeps the CA key only under pki, while tiers get only the CA certificate', () => {
    assert.equal(L.pki.caKey, `${ROOT}/pki/ca.key`);
    const all = tiers.flatMap((t) => files(L[t]));
    assert.deepEqual(
      all.filter((p) => p.endsWith('ca.key')),
      [L.pki.caKey],
    );
    assert.ok(inside(L.broker.dir, L.broker.caCert));
    assert.ok(inside(L.core.dir, L.core.caCert));
  });

  it('gives the gateway no private key but its own host key, and core no SSH material', () => {
    const gw = files(L.gateway);
    assert.ok(!gw.some((p) => /client\.key|server\.key|id_ed25519|ca\.key/.test(p)));
    const core = files(L.core);
    assert.ok(!core.some((p) => /ssh|ed25519|authorized_keys|knock/.test(p)));
  });

  it('names one knock secret per gateway inside the broker directory', () => {
    assert.equal(L.broker.knockSecret('gw-1'), `${ROOT}/broker/knock-gw-1.secret`);
    assert.notEqual(L.broker.knockSecret('gw-1'), L.broker.knockSecret('gw-2'));
  });
});
