/**
 * The timings the gateway and the broker must agree on. The gateway answers 504 when a
 * request has had REQUEST_TIMEOUT_MS (this by default); a request held by a broker worker
 * that died is claimed by another after CLAIM_IDLE_MS, looked for every CLAIM_INTERVAL_MS.
 * Those two must add up to less than this, or failover only ever ends in 504s.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * The largest time budget a request may carry. The broker clips budgets to this and trims
 * queue entries older than it: nobody waits for them any more.
 */
export const MAX_BUDGET_MS = 120_000;
