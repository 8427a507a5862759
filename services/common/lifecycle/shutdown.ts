import type { Logger } from '../log/logger';

/**
 * How long a service drains on SIGTERM by default. compose.yaml's stop_grace_period must
 * be longer, or Docker kills the process mid-drain (its own default is 10 s).
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 20_000;
import { errorFields } from '../log/logger';

/**
 * Ordered cleanup for a process. Closers run in reverse order of registration (last
 * started, first stopped); every closer runs even when an earlier one fails, each failure
 * is reported, and `close()` returns the same promise when called twice.
 */
export class Lifecycle {
  private readonly closers: { name: string; close: () => Promise<void> | void }[] = [];
  private closing: Promise<boolean> | undefined;

  constructor(private readonly log: Logger) {}

  onClose(name: string, close: () => Promise<void> | void): void {
    this.closers.push({ name, close });
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Resolves true when every closer succeeded within the deadline. */
  close(deadlineMs: number): Promise<boolean> {
    this.closing ??= this.runClosers(deadlineMs);
    return this.closing;
  }

  private async runClosers(deadlineMs: number): Promise<boolean> {
    let ok = true;
    const deadline = Date.now() + deadlineMs;
    for (const { name, close } of [...this.closers].reverse()) {
      const left = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(close),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`did not close within ${deadlineMs} ms`)), left);
          }),
        ]);
      } catch (err) {
        ok = false;
        this.log.error('close failed', { closer: name, ...errorFields(err) });
      } finally {
        clearTimeout(timer);
      }
    }
    return ok;
  }
}

/**
 * SIGTERM/SIGINT → drain and exit 0 (1 if a closer failed). A fatal error anywhere →
 * log it and exit 1: in a container the supervisor restarts us; carrying on in an
 * unknown state is worse.
 */
export function installProcessHandlers(lifecycle: Lifecycle, log: Logger, deadlineMs: number): void {
  const stop = (signal: string): void => {
    if (lifecycle.isClosing) return;
    log.info('stopping', { signal });
    void lifecycle.close(deadlineMs).then((ok) => {
      log.info('stopped', { clean: ok });
      process.exit(ok ? 0 : 1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const fatal = (kind: string) => (err: unknown) => {
    log.error('fatal', { kind, ...errorFields(err) });
    void lifecycle.close(Math.min(deadlineMs, 5000)).finally(() => process.exit(1));
  };
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));
}
