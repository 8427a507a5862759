/**
 * The token documents core has read, kept so that the common request costs no database
 * round trip for its token. Pure: the caller passes the epoch and the clock.
 *
 * - Epochs: every entry belongs to the epoch it was read under (token-generation.ts turns
 *   each token change nonstop-admin makes into a new epoch). A lookup under a new epoch
 *   empties the cache; a value read under an epoch that has since moved on is not stored,
 *   since the read may have happened before the change.
 * - Bounded: at most `maxEntries`, the least recently used dropped first; and no entry is
 *   used after `maxAgeMs`, the backstop for a change that never moved the epoch (a document
 *   edited by hand, an admin process killed between its write and its signal).
 * - Only what the caller stores: core stores tokens it found, never "not found", so a
 *   token created after a miss is never refused by the cache.
 */
export interface GrantCacheLimits {
  maxEntries: number;
  /** Age after which an entry is read again, on a monotonic clock. */
  maxAgeMs: number;
}

interface Entry<V> {
  value: V;
  storedAt: number;
}

export class GrantCache<V> {
  // A Map iterates in insertion order: re-inserting on each hit keeps the least recently
  // used entry first, where eviction finds it.
  private readonly entries = new Map<string, Entry<V>>();
  private epoch: number | undefined;

  constructor(private readonly limits: GrantCacheLimits) {
    if (!Number.isSafeInteger(limits.maxEntries) || limits.maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    if (!(limits.maxAgeMs > 0)) throw new RangeError('maxAgeMs must be positive');
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value stored under `key` in this epoch and younger than maxAgeMs. */
  get(key: string, epoch: number, nowMs: number): V | undefined {
    if (epoch !== this.epoch) {
      this.entries.clear();
      this.epoch = epoch;
      return undefined;
    }
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    // A clock that went backwards makes the age unknowable: read again.
    if (nowMs - entry.storedAt >= this.limits.maxAgeMs || nowMs < entry.storedAt) return undefined;
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps a value read under `epoch`, unless the epoch has moved on since. */
  set(key: string, value: V, epoch: number, nowMs: number): void {
    if (epoch !== this.epoch) return;
    this.entries.delete(key);
    this.entries.set(key, { value, storedAt: nowMs });
    if (this.entries.size > this.limits.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}
