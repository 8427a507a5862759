import { errorFields, type Logger } from '../../common/log/logger';
import type { KnockSpec, TimeSpec } from '../../common/knock/sequence';
import { GUESS_FLOOR_LOG2 } from '../../common/knock/strength';
import type { WindowFirewall } from '../firewall/no-firewall';
import type { GatewayMetrics } from '../metrics';
import { ReplayStore } from './replay-store';
import { KnockSniffer } from './sniffer';
import { KnockTracker, lostRecordState, type KnockOutcome, type ReplayState } from './tracker';
import { WindowGrants } from './window-grants';

export interface DoorOptions {
  spec: KnockSpec;
  stepTimeoutMs: number;
  sequenceTimeoutMs: number;
  /** How long a correct knock opens the SSH port for its source. */
  windowMs: number;
  maxSources: number;
  /** Per-source knock attempts (budget.ts). */
  budget: { attempts: number; refillMs: number };
  /** Where used time-based knocks are kept across restarts (replay-store.ts). */
  replayFile: string;
  capture: { tcpdump: string; device: string; bufferKiB: number };
  maxOpenWindows: number;
}

/** What the door needs from packet capture: KnockSniffer, or a test's stand-in. */
export interface KnockCapture {
  start(): Promise<void>;
  stop(): void;
  on(event: 'outcome', listener: (outcome: KnockOutcome, src: string) => void): unknown;
  readonly running: boolean;
  readonly restarts: number;
  readonly packets: number;
}

export interface DoorParts {
  firewall: WindowFirewall;
  metrics: GatewayMetrics;
  log: Logger;
  now?: () => number;
  /** Builds the capture that feeds `tracker`; the tcpdump sniffer unless a test says otherwise. */
  capture?: (tracker: KnockTracker) => KnockCapture;
}

export interface DoorStats {
  capturing: boolean;
  captureRestarts: number;
  packets: number;
  /** Sources with knock progress, and records evicted by the source cap since start. */
  tracked: number;
  evicted: number;
  /** Sources that spent their knock budget. */
  throttled: number;
}

/** Lines about one kind of hostile event are written at most this often. */
const LOG_INTERVAL_MS = 10_000;

/**
 * The gateway's door as one component: packet capture → knock tracker → a grant for the
 * source, a firewall window for it, metrics and logs; and the admit rule the SSH server
 * asks about each TCP connection. main.ts only wires it.
 *
 * Order of a correct time-based knock: the tracker burns its (window, nonce); the door
 * makes that durable (replay-store.ts) and only then opens the window. If the record
 * cannot be written the knock opens nothing (fail closed: a window opened on a burn that
 * a restart would forget is a window a recorded knock could open again).
 */
export class KnockDoor {
  private tracker: KnockTracker | undefined;
  private capture: KnockCapture | undefined;
  private store: ReplayStore | undefined;
  private readonly grants: WindowGrants;
  private readonly now: () => number;
  private gauges: NodeJS.Timeout | undefined;
  private readonly throttledLine: RateLimitedLine;
  private readonly replayLine: RateLimitedLine;

  constructor(
    private readonly opts: DoorOptions,
    private readonly parts: DoorParts,
  ) {
    this.now = parts.now ?? Date.now;
    this.grants = new WindowGrants(opts.maxOpenWindows, this.now);
    this.throttledLine = new RateLimitedLine(LOG_INTERVAL_MS, this.now);
    this.replayLine = new RateLimitedLine(LOG_INTERVAL_MS, this.now);
  }

  /** Starts capture. The firewall table is the caller's: it guards more than this door. */
  async start(): Promise<void> {
    const { spec } = this.opts;
    this.tracker = new KnockTracker({
      spec,
      stepTimeoutMs: this.opts.stepTimeoutMs,
      sequenceTimeoutMs: this.opts.sequenceTimeoutMs,
      maxSources: this.opts.maxSources,
      budget: this.opts.budget,
      now: this.now,
      ...(spec.mode === 'time' ? { replay: this.loadReplayState(spec) } : {}),
    });
    if (spec.mode === 'static') {
      // Guessing 65,535^L ports takes about 2^(16L - 1) SYNs if they were drawn at random; people pick them.
      this.parts.log.warn('static knock sequence: reusable, and as secret as its ports; use KNOCK_MODE=time where it matters', {
        guessWorkLog2IfRandom: 16 * spec.ports.length - 1,
        floorLog2: GUESS_FLOOR_LOG2,
      });
    }
    const tracker = this.tracker;
    this.capture = this.parts.capture
      ? this.parts.capture(tracker)
      : new KnockSniffer(tracker, { ...this.opts.capture, sweepIntervalMs: 1000 }, this.parts.log);
    this.capture.on('outcome', (outcome, src) => this.onOutcome(outcome, src));
    await this.capture.start();
    this.gauges = setInterval(() => this.refreshGauges(), 1000);
    this.gauges.unref();
  }

  /**
   * Takes a new sequence rule while running (a rotated knock secret, with the previous one
   * during the overlap: gateway/knock/secret-files.ts).
   */
  setSpec(spec: KnockSpec): void {
    if (!this.tracker) throw new Error('the knock door is not started');
    this.tracker.setSpec(spec);
  }

  /** Whether the SSH server may take a TCP connection from `address`: one per correct knock. */
  admit(address: string): boolean {
    if (!this.grants.consume(address)) return false;
    // One knock, one connection: close the firewall window as soon as it is used.
    this.parts.firewall.revoke(address).catch((err) => this.parts.log.warn('closing window failed', { src: address, ...errorFields(err) }));
    return true;
  }

  stats(): DoorStats {
    const t = this.tracker?.stats();
    return {
      capturing: this.capture?.running ?? false,
      captureRestarts: this.capture?.restarts ?? 0,
      packets: this.capture?.packets ?? 0,
      tracked: t?.tracked ?? 0,
      evicted: t?.evicted ?? 0,
      throttled: t?.budget.throttled ?? 0,
    };
  }

  /** Stops capture: no knock is recognised after this, so no window opens. Safe to call twice. */
  stop(): void {
    clearInterval(this.gauges);
    this.capture?.stop();
  }

  /**
   * Reads the used knocks kept by the previous run. A record that exists but cannot be
   * trusted is not taken as empty: every window it may have covered counts as used, and
   * that is written back at once so a restart loop keeps it.
   */
  private loadReplayState(spec: TimeSpec): ReplayState {
    this.store = new ReplayStore(this.opts.replayFile, spec.periodMs);
    const loaded = this.store.load();
    if (loaded.state) {
      if (loaded.state.burnt.length > 0) this.parts.log.info('used knocks restored', { file: this.store.path, count: loaded.state.burnt.length });
      return loaded.state;
    }
    const state = lostRecordState(spec, this.opts.sequenceTimeoutMs, this.now());
    this.parts.log.error('record of used knocks lost; refusing every knock of the windows it may have covered', { file: this.store.path, why: loaded.lost, refuseThroughWindow: state.refuseThrough?.window });
    try {
      this.store.save(state);
    } catch (err) {
      this.parts.log.error('cannot write the record of used knocks; knocks will open nothing until it can be', { file: this.store.path, ...errorFields(err) });
    }
    return state;
  }

  private onOutcome(outcome: KnockOutcome, src: string): void {
    const { metrics, log } = this.parts;
    if (outcome === 'opened' && !this.recordUsed()) outcome = 'unrecorded';
    metrics.knockSyns.inc({ outcome });
    if (outcome === 'throttled') {
      const held = this.throttledLine.pass();
      if (held !== undefined) log.warn('knock budget spent: this source starts no knock until it refills', { src, linesHeldBack: held });
    } else if (outcome === 'replay') {
      const held = this.replayLine.pass();
      if (held !== undefined) log.warn('replayed knock sequence refused', { src, linesHeldBack: held });
    } else if (outcome === 'unrecorded') {
      log.error('correct knock not recorded as used; window not opened', { src });
    } else if (outcome === 'opened') {
      this.grants.open(src, this.opts.windowMs);
      metrics.windowsOpened.inc();
      log.info('knock accepted; ssh window open', { src, windowMs: this.opts.windowMs });
      this.parts.firewall.allow(src, this.opts.windowMs).catch((err) => log.error('opening window failed', { src, ...errorFields(err) }));
    }
  }

  /** Makes the tracker's burnt set durable before a time-based knock opens anything. */
  private recordUsed(): boolean {
    if (!this.store || !this.tracker) return true;
    try {
      this.store.save(this.tracker.replayState());
      return true;
    } catch (err) {
      this.parts.log.error('cannot write the record of used knocks', { file: this.store.path, ...errorFields(err) });
      return false;
    }
  }

  private refreshGauges(): void {
    const { metrics } = this.parts;
    const s = this.stats();
    metrics.knockTracked.set(s.tracked);
    metrics.knockEvicted.set(s.evicted);
    metrics.knockPackets.set(s.packets);
    metrics.knockThrottled.set(s.throttled);
    this.grants.sweep();
  }
}

/** At most one line per interval; the ones held back in between are counted on the next. */
class RateLimitedLine {
  private last = Number.NEGATIVE_INFINITY;
  private held = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** How many lines were held back since the last one, or undefined: hold this one back too. */
  pass(): number | undefined {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.held++;
      return undefined;
    }
    this.last = t;
    const held = this.held;
    this.held = 0;
    return held;
  }
}
