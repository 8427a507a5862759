import assert from 'node:assert/strict';
import { SourceBudget, budgetKey } from '../../../../services/gateway/knock/budget';

describe('SourceBudget', () => {
  const opts = { attempts: 3, refillMs: 1000, maxSources: 100 };

  it('lets a source start `attempts` attempts at once, then one per refill period', () => {
    const b = new SourceBudget(opts);
    for (let i = 0; i < 3; i++) assert.equal(b.take('198.51.100.1', 0), true);
    assert.equal(b.take('198.51.100.1', 999), false);
    assert.equal(b.take('198.51.100.1', 1000), true);
    assert.equal(b.take('198.51.100.1', 1000), false);
    assert.equal(b.take('198.51.100.2', 1000), true, 'another source has its own budget');
  });

  it('refills no further than `attempts`, however long a source waited', () => {
    const b = new SourceBudget(opts);
    b.take('198.51.100.1', 0);
    const later = 3_600_000;
    for (let i = 0; i < 3; i++) assert.equal(b.take('198.51.100.1', later), true);
    assert.equal(b.take('198.51.100.1', later), false);
  });

  it('gives back a refunded attempt at once', () => {
    const b = new SourceBudget(opts);
    for (let i = 0; i < 3; i++) b.take('198.51.100.1', 0);
    b.refund('198.51.100.1', 0);
    assert.equal(b.take('198.51.100.1', 0), true);
    assert.equal(b.take('198.51.100.1', 0), false);
  });

  it('keeps no record of a source that refilled completely, and counts the throttled ones on sweep', () => {
    const b = new SourceBudget(opts);
    for (let i = 0; i < 3; i++) b.take('198.51.100.1', 0);
    b.take('198.51.100.2', 0);
    b.sweep(0);
    assert.deepEqual(b.stats(), { tracked: 2, throttled: 1, evicted: 0 });
    b.sweep(3000);
    assert.deepEqual(b.stats(), { tracked: 0, throttled: 0, evicted: 0 });
  });

  it('holds at most maxSources records, evicting the least recently charged', () => {
    const b = new SourceBudget({ ...opts, maxSources: 10 });
    for (let i = 0; i < 3; i++) b.take('198.51.100.1', 0);
    for (let i = 0; i < 10; i++) b.take(`10.0.0.${i}`, 1);
    assert.equal(b.stats().tracked, 10);
    assert.equal(b.stats().evicted, 1);
    // The evicted source starts over with a full budget: what evicting it cost the flooder.
    assert.equal(b.take('198.51.100.1', 2), true);
  });
});

describe('budgetKey', () => {
  it('is the address itself for IPv4 and the /64 for IPv6, however the address is written', () => {
    assert.equal(budgetKey('198.51.100.7'), '198.51.100.7');
    assert.equal(budgetKey('2001:db8:0:1::5'), '2001:db8:0:1::/64');
    assert.equal(budgetKey('2001:db8:0:1:ffff:ffff:ffff:ffff'), '2001:db8:0:1::/64');
    assert.equal(budgetKey('2001:DB8:0000:0001:0:0:0:9'), '2001:db8:0:1::/64');
    assert.equal(budgetKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(budgetKey('::1'), '0:0:0:0::/64');
    assert.equal(budgetKey('fe80::'), 'fe80:0:0:0::/64');
    assert.notEqual(budgetKey('2001:db8:0:1::5'), budgetKey('2001:db8:0:2::5'));
    assert.equal(budgetKey('::ffff:198.51.100.7'), '::ffff:198.51.100.7');
  });
});
