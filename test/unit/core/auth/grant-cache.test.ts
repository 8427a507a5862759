import assert from 'node:assert/strict';
import { GrantCache } from '../../../../services/core/auth/grant-cache';

describe('GrantCache', () => {
  const limits = { maxEntries: 3, maxAgeMs: 1000 };

  it('returns what was stored under the current epoch, and nothing for a key never stored', () => {
    const cache = new GrantCache<string>(limits);
    assert.equal(cache.get('a', 1, 0), undefined);
    cache.set('a', 'A', 1, 0);
    assert.equal(cache.get('a', 1, 10), 'A');
    assert.equal(cache.get('b', 1, 10), undefined);
  });

  it('holds at most maxEntries, dropping the least recently used first', () => {
    const cache = new GrantCache<string>(limits);
    cache.get('a', 1, 0);
    for (const k of ['a', 'b', 'c']) cache.set(k, k.toUpperCase(), 1, 0);
    // "a" used again: "b" is now the least recently used.
    assert.equal(cache.get('a', 1, 1), 'A');
    cache.set('d', 'D', 1, 2);
    assert.equal(cache.size, 3);
    assert.equal(cache.get('b', 1, 3), undefined);
    assert.equal(cache.get('a', 1, 3), 'A');
    assert.equal(cache.get('c', 1, 3), 'C');
    assert.equal(cache.get('d', 1, 3), 'D');
    for (let i = 0; i < 100; i++) cache.set(`k${i}`, 'x', 1, 4);
    assert.equal(cache.size, 3);
  });

  it('forgets everything when the epoch moves', () => {
    const cache = new GrantCache<string>(limits);
    cache.get('a', 1, 0);
    cache.set('a', 'A', 1, 0);
    assert.equal(cache.get('a', 1, 1), 'A');
    assert.equal(cache.get('a', 2, 1), undefined);
    assert.equal(cache.size, 0);
    // Nor does going back to the old epoch number bring it back.
    assert.equal(cache.get('a', 1, 1), undefined);
  });

  it('does not keep a value read under an epoch that has moved on since', () => {
    const cache = new GrantCache<string>(limits);
    cache.get('a', 1, 0); // request 1 misses under epoch 1 and goes to the database
    cache.get('b', 2, 0); // meanwhile a change: request 2 sees epoch 2
    cache.set('a', 'stale', 1, 0); // request 1's read comes back
    assert.equal(cache.get('a', 2, 1), undefined);
    // Positive control: a read under the current epoch is kept.
    cache.set('a', 'fresh', 2, 1);
    assert.equal(cache.get('a', 2, 2), 'fresh');
  });

  it('does not use an entry from maxAgeMs after it was stored, nor when the clock went backwards', () => {
    const cache = new GrantCache<string>(limits);
    cache.get('a', 1, 0);
    cache.set('a', 'A', 1, 5000);
    assert.equal(cache.get('a', 1, 5999), 'A');
    assert.equal(cache.get('a', 1, 6000), undefined);
    cache.set('b', 'B', 1, 5000);
    assert.equal(cache.get('b', 1, 4999), undefined);
  });

  it('refuses limits that would make it unbounded or useless', () => {
    for (const bad of [{ maxEntries: 0, maxAgeMs: 1 }, { maxEntries: 1.5, maxAgeMs: 1 }, { maxEntries: Infinity, maxAgeMs: 1 }, { maxEntries: 1, maxAgeMs: 0 }, { maxEntries: 1, maxAgeMs: NaN }]) {
      assert.throws(() => new GrantCache(bad), RangeError, JSON.stringify(bad));
    }
    assert.equal(new GrantCache({ maxEntries: 1, maxAgeMs: 1 }).size, 0);
  });
});
