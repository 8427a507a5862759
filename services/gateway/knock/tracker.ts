import { isFirstPort, timeCandidates, windowOf, type Candidate, type KnockSpec, type TimeSpec } from '../../common/knock/sequence';
import { SourceBudget, type BudgetStats } from './budget';

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
  | 'replay'
  /** A first step from a source that has spent its knock budget: nothing started. */
  | 'throttled'
  /** A complete time-based sequence that could not be recorded as used (record full): opens nothing. */
  | 'unrecorded';

/** The (window, nonce) pairs already used, as kept across restarts (replay-store.ts). */
export interface ReplayState {
  burnt: { window: number; nonce: number; untilMs: number }[];
  /** Every window up to `window` counts as used, until `untilMs` (set when a record was lost). */
  refuseThrough?: { window: number; untilMs: number };
}

export interface TrackerOptions {
  spec: KnockSpec;
  /** Longest gap between two steps. */
  stepTimeoutMs: number;
  /** Longest time from first to last step. */
  sequenceTimeoutMs: number;
  /** Most sources tracked at once; the oldest is evicted beyond it (spoofed-source floods). */
  maxSources: number;
  /** Per-source attempts (budget.ts); none for simulations of the bare sequence space. */
  budget?: { attempts: number; refillMs: number };
  /** Used sequences from before a restart. */
  replay?: ReplayState;
  /** Most used sequences remembered at once; a sequence that cannot be remembered opens nothing. */
  maxBurnt?: number;
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
  budget: BudgetStats;
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
 * - Starting an attempt costs the source one unit of its knock budget (budget.ts); an
 *   attempt that opens gives it back. A source with nothing left is throttled: its first
 *   steps start nothing until the budget refills. Steps of an attempt already started
 *   are free, so a knock in progress is never cut by its own budget.
 * - A completed time-based sequence is burnt per (window, nonce) for as long as it could
 *   be accepted again: replaying it opens nothing (static sequences behave as knockd's:
 *   reusable). `replayState()` gives the burnt set to keep across restarts.
 * - At most `maxSources` records; a new source evicts the least recently active one.
 */
export class KnockTracker {
  private readonly progress = new Map<string, Progress>();
  /** Burnt (window, nonce) pairs, keyed `window:nonce`, each with the time it may be forgotten. */
  private readonly burnt = new Map<string, { window: number; nonce: number; untilMs: number }>();
  private refuseThrough: { window: number; untilMs: number } | undefined;
  private readonly budget: SourceBudget | undefined;
  private readonly maxBurnt: number;
  private readonly now: () => number;
  private evicted = 0;
  private readonly timeCache = new Map<string, Candidate[]>();
  private expired = 0;

  /** The sequence rule in force: setSpec() changes it (a knock secret rotated). */
  private spec: KnockSpec;

  constructor(private readonly opts: TrackerOptions) {
    this.spec = opts.spec;
    this.now = opts.now ?? Date.now;
    this.maxBurnt = opts.maxBurnt ?? 65_536;
    this.budget = opts.budget ? new SourceBudget({ ...opts.budget, maxSources: opts.maxSources }) : undefined;
    const t = this.now();
    for (const b of opts.replay?.burnt ?? []) {
      if (b.untilMs > t && this.burnt.size < this.maxBurnt) this.burnt.set(`${b.window}:${b.nonce}`, { ...b });
    }
    if (opts.replay?.refuseThrough && opts.replay.refuseThrough.untilMs > t) this.refuseThrough = { ...opts.replay.refuseThrough };
  }

  /**
   * Takes a new sequence rule (the knock secret and its previous one, followed from their
   * files). Knocks in progress keep the candidates they had; the used (window, nonce) set
   * is kept whole, so nothing used before can be replayed after.
   */
  setSpec(spec: KnockSpec): void {
    this.spec = spec;
    this.timeCache.clear();
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
      return restarted === 'progress' || restarted === 'ignored' ? 'reset' : restarted;
    }
    return this.start(syn, t);
  }

  private start(syn: Syn, t: number): KnockOutcome {
    const spec = this.spec;
    if (!isFirstPort(spec, syn.dport)) return 'ignored';
    if (this.budget && !this.budget.take(syn.src, t)) return 'throttled';
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
    const spec = this.spec;
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
      if (done.replay) {
        const outcome = this.burn(done.replay.window, done.replay.nonce, t);
        if (outcome !== 'opened') return outcome;
      }
      this.budget?.refund(syn.src, t);
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

  /** Marks (window, nonce) used; anything but 'opened' means the sequence must not open. */
  private burn(window: number, nonce: number, t: number): KnockOutcome {
    const key = `${window}:${nonce}`;
    if (this.burnt.has(key)) return 'replay';
    if (this.refuseThrough && window <= this.refuseThrough.window) return 'replay';
    if (this.burnt.size >= this.maxBurnt) this.forgetExpired(t);
    if (this.burnt.size >= this.maxBurnt) return 'unrecorded';
    this.burnt.set(key, { window, nonce, untilMs: acceptableUntil(this.spec, this.opts.sequenceTimeoutMs, window) });
    return 'opened';
  }

  /** The used sequences still worth remembering, for the replay store. */
  replayState(): ReplayState {
    const t = this.now();
    const burnt = [...this.burnt.values()].filter((b) => b.untilMs > t).map((b) => ({ ...b }));
    return this.refuseThrough && this.refuseThrough.untilMs > t ? { burnt, refuseThrough: { ...this.refuseThrough } } : { burnt };
  }

  private isExpired(state: Progress, t: number): boolean {
    return t - state.lastAt > this.opts.stepTimeoutMs || t - state.startedAt > this.opts.sequenceTimeoutMs;
  }

  private forgetExpired(t: number): void {
    for (const [key, b] of this.burnt) if (b.untilMs <= t) this.burnt.delete(key);
    if (this.refuseThrough && this.refuseThrough.untilMs <= t) this.refuseThrough = undefined;
  }

  /** Drops expired progress, burnt keys and refilled budgets; returns how many progress records expired. */
  sweep(): number {
    const t = this.now();
    let n = 0;
    for (const [src, state] of this.progress) {
      if (this.isExpired(state, t)) {
        this.progress.delete(src);
        n++;
      }
    }
    this.forgetExpired(t);
    this.budget?.sweep(t);
    this.expired += n;
    return n;
  }

  stats(): TrackerStats {
    return { tracked: this.progress.size, evicted: this.evicted, expired: this.expired, budget: this.budget?.stats() ?? { tracked: 0, throttled: 0, evicted: 0 } };
  }
}

/**
 * Until when a replay of `window`'s sequence could still complete: a start is given the
 * candidates of its own window and both neighbours, so window w is offered to starts
 * before (w + 2) periods, and such a start may finish up to a sequence timeout later.
 */
function acceptableUntil(spec: KnockSpec, sequenceTimeoutMs: number, window: number): number {
  return spec.mode === 'time' ? (window + 2) * spec.periodMs + sequenceTimeoutMs : 0;
}

/**
 * The replay state of a gateway that lost its record of used knocks (unreadable file):
 * every window that may already have been used — up to the next one — counts as used, so
 * no replay can open; knocks open again once the window after that comes round (at most
 * two periods later).
 */
export function lostRecordState(spec: TimeSpec, sequenceTimeoutMs: number, nowMs: number): ReplayState {
  const window = windowOf(spec, nowMs) + 1;
  return { burnt: [], refuseThrough: { window, untilMs: acceptableUntil(spec, sequenceTimeoutMs, window) } };
}
