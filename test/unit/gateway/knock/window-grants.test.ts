import assert from 'node:assert/strict';
import { WindowGrants } from '../../../../services/gateway/knock/window-grants';

describe('WindowGrants', () => {
  const setup = (max = 10): { grants: WindowGrants; clock: { t: number } } => {
    const clock = { t: 5_000_000 };
    return { grants: new WindowGrants(max, () => clock.t), clock };
  };

  it('admits exactly one connection per grant', () => {
    const { grants } = setup();
    grants.open('198.51.100.7', 10_000);
    assert.equal(grants.consume('198.51.100.7'), true);
    assert.equal(grants.consume('198.51.100.7'), false);
    assert.equal(grants.size, 0);
  });

  it('admits nobody without a grant, and only the granted address', () => {
    const { grants } = setup();
    grants.open('2001:db8::7', 10_000);
    assert.equal(grants.consume('198.51.100.8'), false);
    assert.equal(grants.consume('2001:db8::8'), false);
    assert.equal(grants.consume('2001:db8::7'), true);
  });

  it('refuses an expired grant and uses it up', () => {
    const { grants, clock } = setup();
    grants.open('198.51.100.7', 10_000);
    clock.t += 10_000;
    assert.equal(grants.consume('198.51.100.7'), false);
    assert.equal(grants.size, 0);
    grants.open('198.51.100.7', 10_000);
    clock.t += 9_999;
    assert.equal(grants.consume('198.51.100.7'), true);
  });

  it('refreshes the expiry when the same address knocks again', () => {
    const { grants, clock } = setup();
    grants.open('198.51.100.7', 10_000);
    clock.t += 8_000;
    grants.open('198.51.100.7', 10_000);
    assert.equal(grants.size, 1);
    clock.t += 8_000;
    assert.equal(grants.consume('198.51.100.7'), true);
  });

  it('keeps at most maxGrants, dropping the oldest', () => {
    const { grants } = setup(2);
    grants.open('10.0.0.1', 10_000);
    grants.open('10.0.0.2', 10_000);
    grants.open('10.0.0.1', 10_000); // re-opened: now the newest
    grants.open('10.0.0.3', 10_000);
    assert.equal(grants.size, 2);
    assert.equal(grants.consume('10.0.0.2'), false);
    assert.equal(grants.consume('10.0.0.1'), true);
    assert.equal(grants.consume('10.0.0.3'), true);
  });

  it('stays within the cap under a flood of grants', () => {
    const { grants } = setup(50);
    for (let i = 0; i < 5000; i++) {
      grants.open(`10.0.${i >> 8}.${i & 255}`, 10_000);
      assert.ok(grants.size <= 50);
    }
    assert.equal(grants.consume(`10.0.${4999 >> 8}.${4999 & 255}`), true);
  });

  it('sweep() drops expired grants and keeps live ones', () => {
    const { grants, clock } = setup();
    grants.open('10.0.0.1', 1_000);
    grants.open('10.0.0.2', 5_000);
    clock.t += 1_000;
    grants.sweep();
    assert.equal(grants.size, 1);
    assert.equal(grants.consume('10.0.0.2'), true);
  });
});
