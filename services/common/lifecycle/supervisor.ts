import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { EventEmitter } from 'node:events';
import type { Logger } from '../log/logger';
import { backoffDelay, type BackoffPolicy } from './backoff';

export interface ChildSpec {
  /** Name used in logs and metrics (e.g. "nginx"). */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Signal that asks the child to stop gracefully. */
  stopSignal?: NodeJS.Signals;
  /** How long to wait after stopSignal before SIGKILL. */
  stopTimeoutMs?: number;
  backoff?: BackoffPolicy;
  /** A run longer than this resets the backoff counter. */
  stableAfterMs?: number;
  /**
   * 'inherit' passes the child's stdout straight to ours (for a child that already writes
   * JSON lines and must open /dev/stdout itself, which fails on a socket pair).
   */
  stdout?: 'pipe' | 'inherit';
}

const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000, minMs: 100 };

/**
 * Runs one external process (nginx, redis-server, the database), restarts it with backoff
 * when it dies, turns each of its output lines into a log line, and stops it on request:
 * stop signal, then SIGKILL after the timeout. Emits 'started' (pid) and 'exited' (code,
 * signal) so the owner can track health.
 */
export class ChildSupervisor extends EventEmitter {
  private child: ChildProcess | undefined;
  private stopping = false;
  private attempt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  restarts = 0;

  constructor(
    private readonly spec: ChildSpec,
    private readonly log: Logger,
  ) {
    super();
  }

  private alive = false;

  get running(): boolean {
    return this.alive;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping) return;
    const opts: SpawnOptions = { stdio: ['ignore', this.spec.stdout ?? 'pipe', 'pipe'], env: this.spec.env ?? process.env };
    if (this.spec.cwd) opts.cwd = this.spec.cwd;
    const child = spawn(this.spec.command, this.spec.args, opts);
    this.child = child;
    this.startedAt = Date.now();
    let ended = false;
    const onEnded = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (ended) return;
      ended = true;
      this.alive = false;
      this.emit('exited', code, signal);
      if (this.stopping) return;
      const ranMs = Date.now() - this.startedAt;
      if (ranMs > (this.spec.stableAfterMs ?? 30_000)) this.attempt = 0;
      const delay = backoffDelay(this.spec.backoff ?? DEFAULT_BACKOFF, this.attempt++);
      this.restarts++;
      this.log.warn('child exited; restarting', { child: this.spec.name, code, signal, ranMs, delayMs: delay });
      this.restartTimer = setTimeout(() => this.start(), delay);
    };
    child.on('error', (err) => {
      this.log.error('child failed', { child: this.spec.name, err: err.message });
      // A child that never started (ENOENT, EACCES) emits no 'exit'.
      if (child.pid === undefined) onEnded(null, null);
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        if (line.trim() !== '') this.log.info(line, { child: this.spec.name });
      });
    }
    child.on('spawn', () => {
      this.alive = true;
      this.log.info('child started', { child: this.spec.name, pid: child.pid });
      this.emit('started', child.pid);
    });
    child.on('exit', onEnded);
  }

  /** Resolves once the child has exited (or was never running). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || !this.alive) return;
    await new Promise<void>((resolve) => {
      const killTimer = setTimeout(() => {
        this.log.warn('child did not stop in time; killing', { child: this.spec.name });
        child.kill('SIGKILL');
      }, this.spec.stopTimeoutMs ?? 10_000);
      child.once('exit', () => {
        clearTimeout(killTimer);
        resolve();
      });
      child.kill(this.spec.stopSignal ?? 'SIGTERM');
    });
  }

  /** Sends a signal to the running child (e.g. SIGHUP to reload). */
  signal(sig: NodeJS.Signals): boolean {
    return this.child?.kill(sig) ?? false;
  }
}
