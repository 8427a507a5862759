import type { Logger } from '../../common/log/logger';
import { ApiError } from '../../common/errors/api-error';
import { decodeReply, encodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../../common/queue/envelope';
import { queueKeys } from '../../common/queue/keys';
import type { GatewayMetrics } from '../metrics';
import type { Tunnel } from '../tunnel/tunnel';
import { Lane, type QueueCredentials } from './lane';

interface Pending {
  envelope: RequestEnvelope;
  encoded: string;
  lane: Lane | undefined;
  resolve: (reply: ReplyEnvelope) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Puts requests on the queue of one of the connected brokers and waits for the reply.
 *
 * - Spreads requests over ready lanes (fewest in flight first).
 * - A lane whose tunnel drops is dropped at once; its requests without a reply are sent
 *   again, with the same request id, on another lane — or, if none is up, as soon as one
 *   comes back before their deadline. Core's insert is idempotent by request id, so
 *   at-least-once delivery here has exactly-once effect there.
 * - A new request with no lane up gets 503; one that outlives its deadline gets 504; a
 *   broker whose Redis is full (maxmemory, noeviction) pushes back with 503.
 */
export class Dispatcher {
  private readonly lanes = new Map<string, Lane>();
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly gatewayId: string,
    private readonly creds: QueueCredentials,
    private readonly commandTimeoutMs: number,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
  ) {}

  addTunnel(tunnel: Tunnel): void {
    const lane = new Lane(tunnel, this.gatewayId, this.creds, this.commandTimeoutMs, this.log);
    this.lanes.set(tunnel.id, lane);
    this.updateGauges();
    lane.on('reply', (id) => this.fetchReply(lane, id));
    lane.on('ready', () => {
      this.updateGauges();
      this.sendParked();
    });
    // A lane that lost its Redis connection may have lost what it queued (a broker whose
    // redis-server restarted starts empty): re-send its requests, same ids, wherever ready.
    lane.on('unready', () => {
      this.updateGauges();
      this.orphan(lane, 'queue connection lost');
    });
    lane.on('resync', () => {
      for (const id of lane.inflight) this.fetchReply(lane, id);
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

  submit(envelope: RequestEnvelope): Promise<ReplyEnvelope> {
    if (this.readyLanes === 0) return Promise.reject(new ApiError('noTunnel', 'no broker is connected'));
    if (this.pending.has(envelope.id)) return Promise.reject(new ApiError('conflict', 'this request id is already in flight'));
    return new Promise<ReplyEnvelope>((resolve, reject) => {
      const timer = setTimeout(() => this.expire(envelope.id), Math.max(0, envelope.deadline - Date.now()));
      const p: Pending = { envelope, encoded: encodeRequest(envelope), lane: undefined, resolve, reject, timer };
      this.pending.set(envelope.id, p);
      this.send(p);
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
    const lane = this.pickLane();
    if (!lane) return; // parked until a lane is ready, or the deadline
    p.lane = lane;
    lane.inflight.add(p.envelope.id);
    lane.cmd.xadd(queueKeys.requests(this.gatewayId), '*', queueKeys.field, p.encoded).catch((err: Error) => {
      if (!this.pending.has(p.envelope.id) || p.lane !== lane) return;
      lane.inflight.delete(p.envelope.id);
      p.lane = undefined;
      if (err.message.startsWith('OOM')) {
        this.finish(p.envelope.id, new ApiError('queueFull', 'the broker queue is full; retry later'));
      } else {
        this.log.warn('enqueue failed', { requestId: p.envelope.id, tunnel: lane.tunnel.id, err: err.message });
        // The XADD may or may not have landed; resending is safe (idempotent at core).
        setImmediate(() => this.pending.has(p.envelope.id) && this.send(p));
      }
    });
  }

  private fetchReply(lane: Lane, id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    lane.cmd.getdel(queueKeys.reply(this.gatewayId, id)).then(
      (text) => {
        if (text === null) return;
        try {
          const reply = decodeReply(text);
          if (reply.id !== id) throw new Error('reply id mismatch');
          this.finish(id, reply);
        } catch (err) {
          this.log.error('broker sent an unreadable reply', { requestId: id, err: (err as Error).message });
          this.finish(id, new ApiError('internal', 'the broker sent an unreadable reply'));
        }
      },
      (err: Error) => this.log.warn('reply fetch failed', { requestId: id, err: err.message }),
    );
  }

  private finish(id: string, outcome: ReplyEnvelope | Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.lane?.inflight.delete(id);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  private expire(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    const lane = p.lane;
    this.finish(id, new ApiError('deadline', 'the request did not complete in time'));
    // A reply may still land; fetch it once so it does not linger in the broker's memory.
    if (lane?.ready) void lane.cmd.getdel(queueKeys.reply(this.gatewayId, id)).catch(() => undefined);
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

  /** Fails everything in flight (shutdown) and closes every lane. */
  close(): void {
    for (const id of [...this.pending.keys()]) this.finish(id, new ApiError('unavailable', 'the gateway is shutting down'));
    for (const lane of this.lanes.values()) lane.close();
    this.lanes.clear();
  }
}
