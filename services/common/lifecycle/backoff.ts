/**
 * Capped exponential backoff with full jitter (the AWS architecture blog's variant): the
 * n-th retry waits a uniform random time in [0, min(cap, base * 2^n)], floored at `min` so
 * a tight crash loop cannot spin.
 */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
  minMs: number;
}

export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(policy.minMs, Math.floor(random() * exp));
}
