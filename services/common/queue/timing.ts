/**
 * The one timing the gateway and the broker must agree on. The gateway answers 504 when a
 * request has had REQUEST_TIMEOUT_MS (this by default); a request held by a broker worker
 * that died is claimed by another after CLAIM_IDLE_MS, looked for every CLAIM_INTERVAL_MS.
 * Those two must add up to less than this, or failover only ever ends in 504s.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
