import { ConfigError } from '../../common/errors/config-error';
import { FollowedFile } from '../../common/config/followed-file';
import type { Logger } from '../../common/log/logger';
import { parseGatewaysFile, type BrokerConfig, type GatewayTarget } from '../config';
import type { BrokerMetrics } from '../metrics';
import { diffGatewayLists, isEmptyDiff } from './diff';
import type { GatewaySet } from './gateway-set';

type Trigger = 'file changed' | 'SIGHUP';

/**
 * Follows BROKER_GATEWAYS_FILE while the broker runs, so gateways are added, removed or
 * changed without a restart: the file is read every BROKER_GATEWAYS_POLL_MS and on SIGHUP
 * (which also re-reads the knock secret files the list names, whose change the poll does
 * not see). A new text is parsed and validated exactly as at start, plus whether Redis has
 * room for that many gateways; one that fails is refused with one log line naming the
 * variable and every problem, and nothing changes — the broker keeps serving the list it
 * has. A valid one goes to the GatewaySet; if that fails (Redis unreachable), the same
 * text is tried again at the next poll. Reloads run one at a time, in the order asked.
 */
export class GatewaysReloader {
  private readonly file: FollowedFile;
  private trigger: Trigger = 'file changed';
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly onSighup = (): void => {
    this.trigger = 'SIGHUP';
    this.file.forget();
    this.file.check();
    this.trigger = 'file changed';
  };

  constructor(
    private readonly source: BrokerConfig['gatewaysFile'],
    private readonly set: GatewaySet,
    private readonly metrics: BrokerMetrics,
    private readonly log: Logger,
  ) {
    this.file = new FollowedFile(
      source.path,
      {
        changed: (text) => this.enqueue(text, this.trigger),
        unreadable: (err) => {
          this.metrics.gatewayReloads.inc({ outcome: 'refused' });
          this.log.error('BROKER_GATEWAYS_FILE refused; still serving the gateways it had', {
            trigger: this.trigger,
            problem: `BROKER_GATEWAYS_FILE=${JSON.stringify(source.path)}: cannot read (${err.code ?? 'error'})`,
            gateways: this.set.gateways.map((g) => g.id),
          });
        },
      },
      source.text,
    );
  }

  start(): void {
    this.file.start(this.source.pollMs);
    process.on('SIGHUP', this.onSighup);
  }

  /** Stops following the file and waits for a reload under way to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.file.stop();
    process.off('SIGHUP', this.onSighup);
    await this.queue;
  }

  private enqueue(text: string, trigger: Trigger): void {
    this.queue = this.queue.then(() => this.reload(text, trigger));
  }

  private async reload(text: string, trigger: Trigger): Promise<void> {
    if (this.stopped) return;
    const before = this.set.gateways;
    let next: GatewayTarget[];
    try {
      next = parseGatewaysFile(this.source.path, text);
      const problem = this.set.problemWith(next);
      if (problem) throw new ConfigError([`BROKER_GATEWAYS_FILE=${JSON.stringify(this.source.path)}: ${next.length} gateways: ${problem}`]);
    } catch (err) {
      const problem = err instanceof ConfigError ? err.problems.join('; ') : `BROKER_GATEWAYS_FILE=${JSON.stringify(this.source.path)}: ${(err as Error).message}`;
      this.metrics.gatewayReloads.inc({ outcome: 'refused' });
      this.log.error('BROKER_GATEWAYS_FILE refused; still serving the gateways it had', { trigger, problem, gateways: before.map((g) => g.id) });
      return;
    }
    const diff = diffGatewayLists(before, next);
    if (isEmptyDiff(diff)) {
      this.metrics.gatewayReloads.inc({ outcome: 'unchanged' });
      this.log.info('BROKER_GATEWAYS_FILE read; no gateway changed', { trigger, gateways: before.map((g) => g.id) });
      return;
    }
    try {
      await this.set.apply(next, diff);
    } catch (err) {
      this.metrics.gatewayReloads.inc({ outcome: 'failed' });
      this.log.error('BROKER_GATEWAYS_FILE could not be applied; trying again at the next poll', { trigger, err: (err as Error).message, gateways: this.set.gateways.map((g) => g.id) });
      this.file.forget();
      return;
    }
    this.metrics.gatewayReloads.inc({ outcome: 'applied' });
    this.log.info('BROKER_GATEWAYS_FILE reloaded', {
      trigger,
      added: diff.added.map((g) => g.id),
      removed: diff.removed.map((g) => g.id),
      changed: diff.changed.map((c) => c.after.id),
      gateways: next.map((g) => g.id),
    });
  }
}
