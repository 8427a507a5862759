/**
 * The gateway app's own record of open knock windows, kept beside the nftables set as a
 * second lock: the SSH server admits a TCP connection only if its source holds a grant,
 * and each grant admits one connection (so a NAT neighbour cannot ride a broker's knock).
 * Pure; the clock is injected.
 */
export class WindowGrants {
  private readonly grants = new Map<string, number>();

  constructor(
    private readonly maxGrants: number,
    private readonly now: () => number = Date.now,
  ) {}

  open(address: string, windowMs: number): void {
    this.grants.delete(address);
    this.grants.set(address, this.now() + windowMs);
    while (this.grants.size > this.maxGrants) this.grants.delete(this.grants.keys().next().value as string);
  }

  /** True (and the grant is used up) when `address` holds an unexpired grant. */
  consume(address: string): boolean {
    const until = this.grants.get(address);
    if (until === undefined) return false;
    this.grants.delete(address);
    return until > this.now();
  }

  sweep(): void {
    const t = this.now();
    for (const [address, until] of this.grants) if (until <= t) this.grants.delete(address);
  }

  get size(): number {
    return this.grants.size;
  }
}
