import type { Logger } from '../../common/log/logger';
import type { BrokerConfig, GatewayTarget } from '../config';
import type { BrokerMetrics } from '../metrics';
import type { QueueConsumer } from '../queue/consumer';
import { redisLimits, redisMemoryProblem, type RedisGatewayUser, type RedisLimits } from '../redis/config';
import type { RedisGatewayUsers } from '../redis/gateway-users';
import { TunnelKeeper, type TunnelState } from '../tunnel/keeper';
import { sharesPassword, type GatewayListDiff } from './diff';

/** Every Redis limit derived from the broker's configuration, for this many gateways. */
export function redisLimitsFor(config: BrokerConfig, gateways: number): RedisLimits {
  return redisLimits({ gateways, maxMemoryBytes: config.redis.maxMemoryBytes, maxBudgetMs: config.queue.maxBudgetMs, claimIntervalMs: config.queue.claimIntervalMs });
}

export function redisUserOf(g: GatewayTarget): RedisGatewayUser {
  return { id: g.id, username: g.queueUsername, passwordSha256s: g.queuePasswordSha256 };
}

/**
 * The gateways this broker serves, and everything that follows from the list: one
 * TunnelKeeper each, one Redis user each (with the client limits sized for their number),
 * the streams the consumer reads, their tunnel metrics. apply() moves all of it to a new
 * list, in the order that never leaves a gateway half-served:
 *
 * - Redis first (users, limits, redis.conf): a new gateway's user exists before its tunnel
 *   comes up; a removed gateway's user is off and its connections cut, so its lane here
 *   goes unready at once and the gateway re-sends what it had queued here through another
 *   broker, or answers 503 no_tunnel if none is left.
 * - then the consumer: reads the new gateways' streams, stops reading the removed ones
 *   (requests of theirs in progress finish; nothing remains to answer them through).
 * - then the tunnels: removed gateways' keepers stop, new ones start; a gateway whose host,
 *   ports or knock changed gets a new keeper; one whose pinned host keys changed keeps its
 *   keeper, which replaces its tunnel (make-before-break) only if its key is no longer pinned.
 *
 * A step that throws (Redis unreachable) leaves the list as it was and the caller applies
 * the same change again: every step is idempotent.
 */
export class GatewaySet {
  private served: GatewayTarget[];
  private readonly keepers = new Map<string, TunnelKeeper>();
  private stopped = false;

  constructor(
    private readonly config: BrokerConfig,
    private readonly parts: {
      users: RedisGatewayUsers;
      consumer: QueueConsumer;
      metrics: BrokerMetrics;
      tunnelLog: Logger;
      /** The broker's SSH keys, newest first (tunnel/ssh-keys.ts); the configured key alone when absent. */
      sshKeys?: () => readonly string[];
    },
  ) {
    this.served = config.gateways;
  }

  get gateways(): readonly GatewayTarget[] {
    return this.served;
  }

  /** Starts the tunnels of the list the broker started with (its Redis users and streams exist already). */
  start(): void {
    for (const g of this.served) this.startKeeper(g);
    this.parts.metrics.gateways.set(this.served.length);
  }

  /** Why this list cannot be served (undefined if it can): Redis's room for that many gateways' connections. */
  problemWith(next: readonly GatewayTarget[]): string | undefined {
    return redisMemoryProblem({ gateways: next.length, maxMemoryBytes: this.config.redis.maxMemoryBytes });
  }

  async apply(next: GatewayTarget[], diff: GatewayListDiff): Promise<void> {
    if (this.stopped) return;
    const renamed = diff.changed.filter((c) => c.before.queueUsername !== c.after.queueUsername);
    await this.parts.users.apply({
      gateways: next.map(redisUserOf),
      limits: redisLimitsFor(this.config, next.length),
      upsert: [...diff.added, ...diff.changed.filter((c) => c.queueUser).map((c) => c.after)].map(redisUserOf),
      cut: diff.changed.filter((c) => c.queueUser && c.before.queueUsername === c.after.queueUsername && !sharesPassword(c.before, c.after)).map((c) => c.after.queueUsername),
      remove: [...diff.removed.map((g) => g.queueUsername), ...renamed.map((c) => c.before.queueUsername)],
    });
    await this.parts.consumer.setGateways(next.map((g) => g.id));
    if (this.stopped) return;
    for (const g of diff.removed) {
      this.stopKeeper(g.id);
      this.parts.metrics.tunnelUp.remove({ gateway: g.id });
      this.parts.metrics.tunnelConnects.remove({ gateway: g.id });
    }
    for (const c of diff.changed) {
      if (c.tunnel) {
        this.stopKeeper(c.before.id);
        this.startKeeper(c.after);
      } else if (c.hostKeys) {
        // A host key rotation's step: the tunnel stays unless its key is no longer pinned.
        this.keepers.get(c.after.id)?.setGateway(c.after);
      }
    }
    for (const g of diff.added) this.startKeeper(g);
    this.served = next;
    this.parts.metrics.gateways.set(next.length);
  }

  /** The broker's SSH keys changed: every tunnel not on the newest one moves to it, make-before-break. */
  keysChanged(): void {
    for (const keeper of this.keepers.values()) keeper.keysChanged();
  }

  /** Each served gateway's tunnel state, for /health. */
  tunnelStates(): Record<string, TunnelState> {
    return Object.fromEntries(this.served.map((g) => [g.id, this.keepers.get(g.id)?.state ?? 'stopped']));
  }

  /** Shutdown: every tunnel closes; the gauges follow (the list itself is still this broker's). */
  stop(): void {
    this.stopped = true;
    for (const keeper of this.keepers.values()) keeper.stop();
  }

  private startKeeper(g: GatewayTarget): void {
    const c = this.config;
    const keeper = new TunnelKeeper(
      g,
      {
        privateKeys: this.parts.sshKeys ?? (() => [c.ssh.privateKey]),
        user: c.ssh.user,
        readyTimeoutMs: c.ssh.readyTimeoutMs,
        connectTimeoutMs: c.ssh.connectTimeoutMs,
        keepaliveIntervalMs: c.ssh.keepaliveIntervalMs,
        keepaliveCountMax: c.ssh.keepaliveCountMax,
        knockGapMs: c.knock.gapMs,
        knockSettleMs: c.knock.settleMs,
        reconnect: c.reconnect,
        queuePort: c.queuePort,
        redisPort: c.redis.port,
      },
      this.parts.tunnelLog,
    );
    keeper.on('state', (s) => {
      this.parts.metrics.tunnelUp.set({ gateway: g.id }, s === 'up' ? 1 : 0);
      if (s === 'up') this.parts.metrics.tunnelConnects.inc({ gateway: g.id });
    });
    this.keepers.set(g.id, keeper);
    keeper.start();
  }

  private stopKeeper(id: string): void {
    const keeper = this.keepers.get(id);
    if (!keeper) return;
    // Its last state change ('stopped') comes later and must not bring back the gauge of a
    // gateway that is gone.
    keeper.removeAllListeners('state');
    keeper.stop();
    this.keepers.delete(id);
  }
}
