/** The reason a request's AbortSignal fires with: its time budget ran out. */
export class DeadlineExceeded extends Error {
  constructor(budgetMs: number) {
    super(`the request's budget of ${budgetMs} ms ran out`);
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** What one database call takes to stay inside the request's budget. */
export interface OperationLimits {
  /**
   * Aborts the driver's server selection, its wait for a pooled connection and its wait
   * for the reply. The mongodb driver 6.x made `timeoutMS` (CSOT) a no-op and has no
   * per-operation bound on the connection wait queue; the signal is what it honours in
   * every one of those stages. An operation aborted before it was written to a connection
   * is dropped from the queue and never reaches the database.
   */
  signal: AbortSignal;
  /** The same limit for the server, so a slow (not stalled) database gives up too. */
  maxTimeMS: number;
}

/**
 * The time one request may still spend, on this process's monotonic clock, from the
 * moment core read its headers. Every database call of the request takes its limits from
 * here, so the token lookup, the insert and any read share one budget. dispose() when the
 * response is done.
 */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly endsAt: number;
  private readonly timer: NodeJS.Timeout;

  constructor(readonly budgetMs: number) {
    this.endsAt = performance.now() + budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new DeadlineExceeded(budgetMs)), budgetMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  remainingMs(): number {
    return Math.max(0, this.endsAt - performance.now());
  }

  /** Limits for the next database call; throws DeadlineExceeded when nothing is left. */
  operation(): OperationLimits {
    const left = Math.floor(this.remainingMs());
    if (left < 1 || this.signal.aborted) throw new DeadlineExceeded(this.budgetMs);
    return { signal: this.signal, maxTimeMS: left };
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}

/** True when `err` is a budget running out rather than a failure of the database. */
export function isDeadlineExceeded(err: unknown): err is DeadlineExceeded {
  return err instanceof DeadlineExceeded;
}
