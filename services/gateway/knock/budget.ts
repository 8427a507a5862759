/**
 * The per-source knock budget: each knock attempt a source starts costs one token, a knock
 * that opens gives it back, and tokens come back at one per `refillMs` up to `attempts`.
 * A source without a token is throttled: its SYNs start nothing until one has come back.
 * A broker that knocks right never spends anything; a guesser is held to `attempts` and then
 * one attempt per `refillMs`, whatever it sends.
 *
 * This limits what one address can try; it is not what makes the door unguessable (an
 * attacker with many addresses has many budgets, and the sequence space answers for that:
 * common/knock/strength.ts). IPv6 sources share one budget per /64, the smallest prefix an
 * ISP routes to one customer, or one host could knock from 2^64 addresses.
 *
 * Pure (the caller passes the time) and bounded: at most `maxSources` records, the least
 * recently charged evicted first; a record that has refilled completely is dropped, as it
 * says nothing a missing record does not. Eviction gives a source a fresh budget, so a
 * guesser who spoofs `maxSources` other sources to push its own record out pays that many
 * SYNs for `attempts` more attempts.
 */
export interface BudgetOptions {
  /** Attempts a source may start in a burst (the bucket size). */
  attempts: number;
  /** One attempt comes back every this many ms. */
  refillMs: number;
  maxSources: number;
}

export interface BudgetStats {
  /** Sources with a record (spent something not yet refilled). */
  tracked: number;
  /** Sources without a whole token at the last sweep. */
  throttled: number;
  evicted: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class SourceBudget {
  private readonly buckets = new Map<string, Bucket>();
  private evicted = 0;
  private throttled = 0;

  constructor(private readonly opts: BudgetOptions) {}

  /** Spends one attempt for `src`; false (nothing spent) when it has none left. */
  take(src: string, t: number): boolean {
    const key = budgetKey(src);
    const bucket = this.refilled(key, t);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    // Re-insert so Map order is least recently charged first (eviction order).
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    while (this.buckets.size > this.opts.maxSources) {
      this.buckets.delete(this.buckets.keys().next().value as string);
      this.evicted++;
    }
    return true;
  }

  /** Gives back the attempt of a knock that opened. */
  refund(src: string, t: number): void {
    const key = budgetKey(src);
    const bucket = this.buckets.get(key);
    if (!bucket) return;
    const b = this.refilled(key, t);
    b.tokens = Math.min(this.opts.attempts, b.tokens + 1);
  }

  /** Drops records that have refilled completely and counts the throttled ones. */
  sweep(t: number): void {
    let throttled = 0;
    for (const [key, bucket] of this.buckets) {
      const tokens = this.level(bucket, t);
      if (tokens >= this.opts.attempts) this.buckets.delete(key);
      else if (tokens < 1) throttled++;
    }
    this.throttled = throttled;
  }

  stats(): BudgetStats {
    return { tracked: this.buckets.size, throttled: this.throttled, evicted: this.evicted };
  }

  private level(bucket: Bucket, t: number): number {
    return Math.min(this.opts.attempts, bucket.tokens + Math.max(0, t - bucket.at) / this.opts.refillMs);
  }

  /** The record for `key` brought up to time `t` (a new one is full and not stored yet). */
  private refilled(key: string, t: number): Bucket {
    const bucket = this.buckets.get(key);
    if (!bucket) return { tokens: this.opts.attempts, at: t };
    bucket.tokens = this.level(bucket, t);
    bucket.at = Math.max(bucket.at, t);
    return bucket;
  }
}

/** The budget a source address draws on: itself for IPv4, its /64 for IPv6. */
export function budgetKey(src: string): string {
  if (!src.includes(':') || src.includes('.')) return src;
  const [head = '', tail] = src.toLowerCase().split('::', 2);
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
