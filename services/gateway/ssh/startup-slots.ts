/**
 * The SSH port's slots for connections that have not authenticated yet, after OpenSSH's
 * MaxStartups and PerSourceMaxStartups: at most `max` in all and `perSource` from one
 * address. Where OpenSSH drops newcomers when the slots are full (so that whoever holds
 * them keeps a broker out), a newcomer here takes the oldest slot of the address holding
 * the most, as long as that address holds more than the newcomer's does: a client that
 * knocked and sits idle can hold a slot only until someone with fewer slots arrives, and a
 * broker (one connection per gateway) always gets in. Only connections the door admitted
 * reach here, so evicting costs the evictor a knock per connection. Pure.
 */
export type StartupClaim<T> = { ok: true; evicted?: T } | { ok: false; reason: 'per_source' | 'full' };

export class StartupSlots<T> {
  /** Per address, its holders in arrival order. */
  private readonly bySource = new Map<string, T[]>();
  private readonly sourceOf = new Map<T, string>();

  constructor(private readonly opts: { max: number; perSource: number }) {}

  get size(): number {
    return this.sourceOf.size;
  }

  /** Gives `holder` a slot for `source`, evicting another holder if the slots are full. */
  claim(source: string, holder: T): StartupClaim<T> {
    const held = this.bySource.get(source)?.length ?? 0;
    if (held >= this.opts.perSource) return { ok: false, reason: 'per_source' };
    let evicted: T | undefined;
    if (this.sourceOf.size >= this.opts.max) {
      evicted = this.busiestOldest(held);
      // Full, and no address holds more slots than this one already does.
      if (evicted === undefined) return { ok: false, reason: 'full' };
      this.release(evicted);
    }
    const list = this.bySource.get(source) ?? [];
    list.push(holder);
    this.bySource.set(source, list);
    this.sourceOf.set(holder, source);
    return evicted === undefined ? { ok: true } : { ok: true, evicted };
  }

  /** Frees the holder's slot (it authenticated, or went away); a no-op for one without. */
  release(holder: T): void {
    const source = this.sourceOf.get(holder);
    if (source === undefined) return;
    this.sourceOf.delete(holder);
    const list = this.bySource.get(source)!.filter((h) => h !== holder);
    if (list.length === 0) this.bySource.delete(source);
    else this.bySource.set(source, list);
  }

  /** The oldest holder of the address with the most slots, if it holds more than `than`. */
  private busiestOldest(than: number): T | undefined {
    let best: T[] | undefined;
    for (const list of this.bySource.values()) {
      if (list.length > than && (!best || list.length > best.length)) best = list;
    }
    return best?.[0];
  }
}
