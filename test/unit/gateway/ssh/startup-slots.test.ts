import assert from 'node:assert/strict';
import { StartupSlots } from '../../../../services/gateway/ssh/startup-slots';

describe('StartupSlots (MaxStartups with eviction)', () => {
  it('refuses a source past its per-source share, and frees the share on release', () => {
    const slots = new StartupSlots<string>({ max: 10, perSource: 2 });
    assert.deepEqual(slots.claim('a', 'a1'), { ok: true });
    assert.deepEqual(slots.claim('a', 'a2'), { ok: true });
    assert.deepEqual(slots.claim('a', 'a3'), { ok: false, reason: 'per_source' });
    slots.release('a1');
    assert.deepEqual(slots.claim('a', 'a3'), { ok: true });
    assert.equal(slots.size, 2);
  });

  it('when full, gives a newcomer the oldest slot of the busiest source', () => {
    const slots = new StartupSlots<string>({ max: 4, perSource: 3 });
    for (const h of ['a1', 'a2', 'a3']) slots.claim('a', h);
    slots.claim('b', 'b1');
    assert.deepEqual(slots.claim('broker', 'k1'), { ok: true, evicted: 'a1' });
    assert.equal(slots.size, 4);
    // a1's slot is gone: releasing it again changes nothing.
    slots.release('a1');
    assert.equal(slots.size, 4);
  });

  it('when full with equal shares, evicts only for a source holding fewer', () => {
    const slots = new StartupSlots<string>({ max: 3, perSource: 2 });
    slots.claim('a', 'a1');
    slots.claim('b', 'b1');
    slots.claim('c', 'c1');
    assert.deepEqual(slots.claim('d', 'd1'), { ok: true, evicted: 'a1' });
    // d holds 1 now, as b and c do: its second connection takes nobody's slot.
    assert.deepEqual(slots.claim('d', 'd2'), { ok: false, reason: 'full' });
  });

  it('lets a source with no slot in whatever the others hold', () => {
    const slots = new StartupSlots<number>({ max: 16, perSource: 4 });
    let n = 0;
    for (let s = 0; s < 40; s++) for (let i = 0; i < 4; i++) slots.claim(`attacker-${s}`, n++);
    assert.equal(slots.size, 16);
    const claim = slots.claim('broker', -1);
    assert.equal(claim.ok, true);
    assert.notEqual(claim.ok && claim.evicted, undefined);
  });
});
