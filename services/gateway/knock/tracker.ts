import { isFirstPort, timeCandidates, windowOf, type Candidate, type KnockSpec } from '../../common/knock/sequence';

/** One TCP SYN as the sniffer saw it (SYN set; ACK, RST and FIN clear). */
export interface Syn {
  src: string;
  sport: number;
  dport: number;
  /** TCP sequence number: with `sport`, tells a retransmission from a new attempt. */
  seq: number;
}

export type KnockOutcome =
  /** Not a knock and no progress to disturb. */
  | 'ignored'
  /** A retransmission of the step just matched; progress kept. */
  | 'retransmit'
  | 'progress'
  /** Progress thrown away: wrong port between steps (noise, a scan). */
  | 'reset'
  | 'opened'
  /** A complete time-based sequence that was already used. */
  | 'replay';

export interface TrackerOptions {
  spec: KnockSpec;
  /** Longest gap between two steps. */
  stepTimeoutMs: number;
  /** Longest time from first to last step. */
  sequenceTimeoutMs: number;
  /** Most sources tracked at once; the oldest is evicted beyond it (spoofed-source floods). */
  maxSources: number;
  now?: () => number;
}

interface Progress {
  /** Still-possible sequences; for time-based knocks computed at the second step. */
  candidates: Candidate[] | undefined;
  firstPort: number;
  matched: number;
  startedAt: number;
  lastAt: number;
  last: { sport: number; seq: number; port: number };
}

export interface TrackerStats {
  tracked: number;
  evicted: number;
  expired: number;
}

/**
 * The knock state machine, one progress record per source address. Pure: no timers or
 * I/O of its own; the sniffer feeds it SYNs and calls `sweep()` on a timer.
 *
 * Rules, exactly:
 * - A SYN to the next port of a candidate sequence advances it; the sequence completes
 *   when its last port is hit in order, within the step and sequence timeouts.
 * - The same SYN again (same source port and sequence number, same port as the step just
 *   matched) is a retransmission and changes nothing.
 * - Any other SYN from a source with progress — a wrong port, a repeat from a new source
 *   port, a port scan touching the sequence ports on its way — resets that source's
 *   progress. If that SYN is itself the first port of a sequence, a new attempt starts.
 * - A SYN from a source without progress that is not a first port is ignored, and costs
 *   no memory. (For time-based knocks every port of the range is a first port: the first
 *   knock carries the nonce; the rest must follow from the HMAC of window and nonce.)
 * - A completed time-based sequence is burnt per (window, nonce): replaying it within its
 *   window opens nothing (static sequences behave as knockd's: reusable).
 * - At most `maxSources` records; a new source evicts the least recently active one.
 */
export class KnockTracker {
  private readonly progress = new Map<string, Progress>();
  private readonly burnt = new Map<string, number>();
  private readonly now: () => number;
  private evicted = 0;
  private readonly timeCache = new Map<string, Candidate[]>();
  private expired = 0;

  constructor(private readonly opts: TrackerOptions) {
    this.now = opts.now ?? Date.now;
  }

  onSyn(syn: Syn): KnockOutcome {
    const t = this.now();
    let state = this.progress.get(syn.src);
    if (state && this.isExpired(state, t)) {
      this.progress.delete(syn.src);
      this.expired++;
      state = undefined;
    }
    if (state) {
      if (syn.dport === state.last.port && syn.sport === state.last.sport && syn.seq === state.last.seq) {
        return 'retransmit';
      }
      const matched = state.matched;
      const next = this.candidatesOf(state).filter((c) => c.ports[matched] === syn.dport);
      if (next.length > 0) return this.advance(syn, state, next, t);
      this.progress.delete(syn.src);
      const restarted = this.start(syn, t);
      return restarted === 'opened' || restarted === 'replay' ? restarted : 'reset';
    }
    return this.start(syn, t);
  }

  private start(syn: Syn, t: number): KnockOutcome {
    const spec = this.opts.spec;
    if (!isFirstPort(spec, syn.dport)) return 'ignored';
    const state: Progress = {
      candidates: spec.mode === 'static' ? [{ ports: spec.ports }] : undefined,
      firstPort: syn.dport,
      matched: 0,
      startedAt: t,
      lastAt: t,
      last: { sport: syn.sport, seq: syn.seq, port: syn.dport },
    };
    return this.advance(syn, state, state.candidates, t);
  }

  /**
   * Time-based candidates are computed only when a source reaches its second step, and
   * cached per (window, first port): a flood of spoofed first steps costs no HMAC at all.
   */
  private candidatesOf(state: Progress): Candidate[] {
    if (state.candidates) return state.candidates;
    const spec = this.opts.spec;
    if (spec.mode === 'static') return (state.candidates = [{ ports: spec.ports }]);
    const key = `${windowOf(spec, state.startedAt)}:${state.firstPort}`;
    let cached = this.timeCache.get(key);
    if (!cached) {
      cached = timeCandidates(spec, state.firstPort, state.startedAt);
      this.timeCache.set(key, cached);
      if (this.timeCache.size > 4096) this.timeCache.delete(this.timeCache.keys().next().value as string);
    }
    return (state.candidates = cached);
  }

  private advance(syn: Syn, state: Progress, next: Candidate[] | undefined, t: number): KnockOutcome {
    state.candidates = next;
    state.matched++;
    state.lastAt = t;
    state.last = { sport: syn.sport, seq: syn.seq, port: syn.dport };
    const done = next?.find((c) => c.ports.length === state.matched);
    if (done) {
      this.progress.delete(syn.src);
      if (done.replayKey !== undefined) {
        if (this.burnt.has(done.replayKey)) return 'replay';
        this.burnt.set(done.replayKey, t + this.burnPeriodMs());
      }
      return 'opened';
    }
    // Re-insert so Map order is least-recently-active first (eviction order).
    this.progress.delete(syn.src);
    this.progress.set(syn.src, state);
    while (this.progress.size > this.opts.maxSources) {
      const oldest = this.progress.keys().next().value as string;
      this.progress.delete(oldest);
      this.evicted++;
    }
    return 'progress';
  }

  private isExpired(state: Progress, t: number): boolean {
    return t - state.lastAt > this.opts.stepTimeoutMs || t - state.startedAt > this.opts.sequenceTimeoutMs;
  }

  private burnPeriodMs(): number {
    // A burnt window can be accepted for up to three periods (previous, current, next).
    return this.opts.spec.mode === 'time' ? this.opts.spec.periodMs * 3 : 0;
  }

  /** Drops expired progress and burnt keys; returns how many progress records expired. */
  sweep(): number {
    const t = this.now();
    let n = 0;
    for (const [src, state] of this.progress) {
      if (this.isExpired(state, t)) {
        this.progress.delete(src);
        n++;
      }
    }
    for (const [key, until] of this.burnt) if (until <= t) this.burnt.delete(key);
    this.expired += n;
    return n;
  }

  stats(): TrackerStats {
    return { tracked: this.progress.size, evicted: this.evicted, expired: this.expired };
  }
}
