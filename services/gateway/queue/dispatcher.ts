import { performance } from 'node:perf_hooks';
import type { Logger } from '../../common/log/logger';
import { ApiError } from '../../common/errors/api-error';
import { PROTOCOL_VERSION } from '../../common/queue/keys';
import { MAX_BUDGET_MS } from '../../common/queue/timing';
import type { ReplyEnvelope, RequestEnvelope } from '../../common/queue/envelope';
import type { GatewayMetrics } from '../metrics';
import type { Tunnel } from '../tunnel/tunnel';
import { Lane, type LaneOptions, type QueueCredentials } from './lane';

/** A request as the API hands it over: the envelope without what the dispatcher adds. */
export type QueueRequest = Omit<RequestEnvelope, 'v' | 'gw' | 'budgetMs'>;

/** One HTTP request waiting for a reply; several may wait for one queued request (a retry). */
interface Waiter {
  resolve: (reply: ReplyEnvelope) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Pending {
  request: QueueRequest;
  /** performance.now() by which the last waiter gives up. */
  deadline: number;
  waiters: Set<Waiter>;
  lane: Lane | undefined;
  /** Sent at least once: from then on it may be stored whatever happens to the gateway. */
  sent: boolean;
}

/** Checks that two requests under one id carry the same record; the API passes a canonical comparison. */
export type SameRequest = (a: QueueRequest, b: QueueRequest) => boolean;

/**
 * Pending requests and the choice of lane; the lanes speak the protocol.
 *
 * - Spreads requests over ready lanes (fewest in flight first).
 * - A lane that stops being ready (tunnel dropped, Redis gone, pings unanswered) loses its
 *   requests at once: they are sent again, with the same id and the budget they have left,
 *   on another lane — or, if none is ready, as soon as one is, before their deadline.
 *   Core's insert is idempotent by id, so at-least-once delivery here has exactly-once
 *   effect there. A reply is taken from whichever lane brings it first.
 * - A request whose id is already pending (a client's retry with the same Idempotency-Key
 *   while the first attempt is in flight) joins it and gets the same reply; with another
 *   body under that key it is a conflict.
 * - A new request with no lane up gets 503 no_tunnel; a waiter that outlives its time gets
 *   504; a broker whose Redis is full pushes back with 503 queue_full; during shutdown new
 *   requests get 503 shutting_down.
 */
export class Dispatcher {
  private readonly lanes = new Map<string, Lane>();
  private readonly pending = new Map<string, Pending>();
  private draining = false;

  constructor(
    private readonly gatewayId: string,
    private readonly creds: QueueCredentials,
    private readonly laneOptions: LaneOptions,
    private readonly sameRequest: SameRequest,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {}

  addTunnel(tunnel: Tunnel): void {
    const lane = new Lane(tunnel, this.gatewayId, this.creds, this.laneOptions, this.log);
    this.lanes.set(tunnel.id, lane);
    this.updateGauges();
    lane.on('reply', (reply) => this.deliver(reply));
    lane.on('ready', () => {
      this.updateGauges();
      this.sendParked();
    });
    // A lane that is not ready may have lost what it queued (a broker whose redis-server
    // restarted starts empty) or the replies to it (published while we were not
    // subscribed): re-send its requests, same ids, wherever a lane is ready.
    lane.on('unready', () => {
      this.updateGauges();
      this.orphan(lane, 'queue lane not ready');
    });
    tunnel.once('closed', () => this.dropLane(lane));
    lane.connect().catch((err: Error) => {
      this.log.warn('queue lane failed to connect', { tunnel: tunnel.id, err: err.message });
    });
  }

  get readyLanes(): number {
    let n = 0;
    for (const l of this.lanes.values()) if (l.ready) n++;
    return n;
  }

  get openLanes(): number {
    return this.lanes.size;
  }

  get pendingRequests(): number {
    return this.pending.size;
  }

  /** Queues the request (or joins the same one in flight) and resolves with its reply. */
  submit(request: QueueRequest, timeoutMs: number): Promise<ReplyEnvelope> {
    if (this.draining) return Promise.reject(new ApiError('shuttingDown', 'the gateway is shutting down; retry on another'));
    const existing = this.pending.get(request.id);
    if (existing && !this.sameRequest(existing.request, request)) {
      return Promise.reject(new ApiError('conflict', 'this Idempotency-Key is in use for a different record'));
    }
    if (!existing && this.readyLanes === 0) return Promise.reject(new ApiError('noTunnel', 'no broker is connected'));
    const deadline = performance.now() + timeoutMs;
    return new Promise<ReplyEnvelope>((resolve, reject) => {
      const p: Pending = existing ?? { request, deadline, waiters: new Set(), lane: undefined, sent: false };
      const waiter: Waiter = { resolve, reject, timer: setTimeout(() => this.expire(p, waiter), timeoutMs) };
      p.waiters.add(waiter);
      // A joining retry may wait longer than the first attempt: later re-sends carry its budget.
      p.deadline = Math.max(p.deadline, deadline);
      if (!existing) {
        this.pending.set(request.id, p);
        this.send(p);
      }
    });
  }

  private pickLane(): Lane | undefined {
    let best: Lane | undefined;
    for (const lane of this.lanes.values()) {
      if (lane.ready && (!best || lane.inflight.size < best.inflight.size)) best = lane;
    }
    return best;
  }

  private send(p: Pending): void {
    const id = p.request.id;
    const budgetMs = Math.floor(p.deadline - performance.now());
    if (budgetMs < 1) return; // its waiters are about to time out
    const lane = this.pickLane();
    if (!lane) return; // parked until a lane is ready, or the deadline
    p.lane = lane;
    lane.inflight.add(id);
    const envelope: RequestEnvelope = { v: PROTOCOL_VERSION, gw: this.gatewayId, budgetMs: Math.min(budgetMs, MAX_BUDGET_MS), ...p.request };
    p.sent = true;
    lane.send(envelope).catch((err: Error) => {
      if (this.pending.get(id) !== p || p.lane !== lane) return;
      lane.inflight.delete(id);
      p.lane = undefined;
      if (err instanceof ApiError) {
        this.finish(p, err);
      } else {
        this.log.warn('enqueue failed', { requestId: id, tunnel: lane.tunnel.id, err: err.message });
        // The XADD may or may not have landed; resending is safe (idempotent at core).
        setImmediate(() => this.pending.get(id) === p && p.lane === undefined && this.send(p));
      }
    });
  }

  private deliver(reply: ReplyEnvelope): void {
    const p = this.pending.get(reply.id);
    if (p) this.finish(p, reply);
  }

  private finish(p: Pending, outcome: ReplyEnvelope | Error): void {
    if (this.pending.get(p.request.id) !== p) return;
    this.pending.delete(p.request.id);
    p.lane?.inflight.delete(p.request.id);
    for (const w of p.waiters) {
      clearTimeout(w.timer);
      if (outcome instanceof Error) w.reject(outcome);
      else w.resolve(outcome);
    }
    p.waiters.clear();
  }

  private expire(p: Pending, waiter: Waiter): void {
    if (!p.waiters.delete(waiter)) return;
    waiter.reject(new ApiError('deadline', 'the request did not complete in time; it may still be stored'));
    if (p.waiters.size > 0 || this.pending.get(p.request.id) !== p) return;
    // Nobody waits any more. The broker drops it once its budget is spent; a reply that
    // still comes is ignored.
    this.pending.delete(p.request.id);
    p.lane?.inflight.delete(p.request.id);
  }

  private dropLane(lane: Lane): void {
    this.lanes.delete(lane.tunnel.id);
    lane.close();
    this.updateGauges();
    this.orphan(lane, 'tunnel dropped');
  }

  private orphan(lane: Lane, why: string): void {
    const orphans = [...lane.inflight];
    lane.inflight.clear();
    for (const id of orphans) {
      const p = this.pending.get(id);
      if (!p) continue;
      p.lane = undefined;
      this.metrics.redispatched.inc();
      this.send(p);
    }
    if (orphans.length > 0) this.log.warn(`${why}; requests re-sent`, { tunnel: lane.tunnel.id, requests: orphans.length });
  }

  private sendParked(): void {
    for (const p of this.pending.values()) if (p.lane === undefined) this.send(p);
  }

  private updateGauges(): void {
    this.metrics.tunnelsOpen.set(this.lanes.size);
    this.metrics.tunnelsReady.set(this.readyLanes);
  }

  /**
   * First step of shutdown: new requests are refused (503 shutting_down, not stored) while
   * those pending still get their replies.
   */
  drain(): void {
    this.draining = true;
  }

  /**
   * Last step of shutdown: ends whatever is still pending — as not stored if it was never
   * sent, as maybe stored if it was — and closes every lane.
   */
  close(): void {
    this.draining = true;
    for (const p of [...this.pending.values()]) {
      this.finish(p, p.sent ? new ApiError('deadline', 'the gateway shut down before the reply came; it may still be stored') : new ApiError('shuttingDown', 'the gateway is shutting down; nothing was stored'));
    }
    for (const lane of this.lanes.values()) lane.close();
    this.lanes.clear();
  }
}
