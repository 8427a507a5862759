import { windowOf, type KnockSpec } from '../../common/knock/sequence';

/**
 * Which time window's sequence a broker should send next. The gateway burns each
 * time-based sequence after one use, so a quick reconnect within the same window must
 * use the next window's sequence (the gateway accepts n-1..n+1); when both are used up,
 * the broker waits for the following window. Pure; the clock is passed in.
 */
export class KnockWindowPicker {
  private lastUsed = -Infinity;

  constructor(private readonly spec: KnockSpec) {}

  /** The window to knock with now, or the milliseconds to wait before one is free. */
  pick(nowMs: number): { window: number } | { waitMs: number } {
    if (this.spec.mode === 'static') return { window: 0 };
    const n = windowOf(this.spec, nowMs);
    if (this.lastUsed < n) return { window: n };
    if (this.lastUsed < n + 1) return { window: n + 1 };
    return { waitMs: (n + 1) * this.spec.periodMs - nowMs + 1 };
  }

  markUsed(window: number): void {
    this.lastUsed = Math.max(this.lastUsed, window);
  }
}
