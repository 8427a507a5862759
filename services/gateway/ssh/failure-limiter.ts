/**
 * Per-address limit on failed SSH authentications: after `maxFailures` within `windowMs`
 * an address is refused outright until the window passes. Bounded: at most `maxTracked`
 * addresses, least recently failed evicted first. Pure; the clock is injected.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly opts: { maxFailures: number; windowMs: number; maxTracked: number },
    private readonly now: () => number = Date.now,
  ) {}

  private recent(address: string): number[] {
    const cutoff = this.now() - this.opts.windowMs;
    const list = (this.failures.get(address) ?? []).filter((t) => t > cutoff);
    if (list.length === 0) this.failures.delete(address);
    return list;
  }

  isBlocked(address: string): boolean {
    return this.recent(address).length >= this.opts.maxFailures;
  }

  recordFailure(address: string): void {
    const list = this.recent(address);
    list.push(this.now());
    this.failures.delete(address);
    this.failures.set(address, list.slice(-this.opts.maxFailures));
    while (this.failures.size > this.opts.maxTracked) {
      this.failures.delete(this.failures.keys().next().value as string);
    }
  }
}
