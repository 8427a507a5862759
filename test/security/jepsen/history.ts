/**
 * What the Jepsen-style test records while it runs, as plain data: every client operation
 * with each HTTP attempt it made, every fault with when it started and healed, and the
 * liveness probes sent at each heal. The checker (checker.ts) judges a History against what
 * core's database holds; it never sees a socket, so it can be tested with hand-made ones.
 */

/**
 * What one attempt tells the client about its write:
 * - ok: 201 with an id — stored under that id;
 * - fail: definitely not stored — a 4xx, a 5xx whose JSON error says `"stored":"no"`, or a
 *   connection refused (not one byte of the request left the client);
 * - info: indeterminate — a timeout, a connection dropped after sending, `"stored":"unknown"`,
 *   or any answer that does not say (a 5xx without the field, a 201 without an id).
 */
export type Outcome = 'ok' | 'fail' | 'info';

export interface Attempt {
  /** Client clock (ms since the epoch): request sent, answer (or error) received. */
  start: number;
  end: number;
  /** HTTP status; 0 when no answer came (network error or client timeout). */
  status: number;
  /** `error.code` and `error.stored` of a JSON error body. */
  code?: string;
  stored?: string;
  /** The id of a 201. */
  id?: string;
  /** The network error (ECONNRESET, client timeout...). */
  network?: string;
  outcome: Outcome;
}

/** A GET of a record right after its 201, through the same public API. */
export interface ReadCheck {
  id: string;
  at: number;
  /**
   * found: 200 with exactly the written content; missing: 404; different: 200 with other
   * content; unverified: no definite answer (5xx, network) within the read's retries.
   */
  result: 'found' | 'missing' | 'different' | 'unverified';
  detail?: string;
}

/** One logical write: one payload with its own canary, sent until it has an outcome. */
export interface Op {
  /** The unique text the payload carries (its `title`): how the checker finds it in core. */
  canary: string;
  client: string;
  collection: string;
  /** The Idempotency-Key sent with every attempt; undefined for an unkeyed client. */
  key?: string;
  /** sha256 of the payload's canonical JSON (contentHash). */
  contentHash: string;
  attempts: Attempt[];
  reads: ReadCheck[];
  /** Why the op was made: the steady load, a burst, a liveness probe. */
  kind: 'load' | 'burst' | 'probe' | 'settle';
}

/** A fault as the nemesis applied it. */
export interface Fault {
  name: string;
  /**
   * What it takes away: `chain` (core or the gateway: nothing can be written), `broker:<service>`
   * (one broker's lane), `clock:<service>` (a broker's wall clock; it must keep serving).
   */
  scope: string;
  start: number;
  /** When it was healed (the killed part healthy again, the rule removed...); undefined if never. */
  healed?: number;
  /** Facts the nemesis checked while applying it (pids, packets dropped, offsets seen). */
  notes: string[];
  /**
   * What the system did wrong under this fault as the nemesis saw it (a graceful stop that
   * ran into Docker's kill, say); the checker reports each as a violation.
   */
  problems: string[];
}

/**
 * The writes sent from a moment the chain should be whole (a heal, or a broker gone while
 * another still serves) until the first 201.
 */
export interface LivenessProbe {
  /** What happened at that moment, e.g. "core power cut healed". */
  fault: string;
  healed: number;
  /** End of the first attempt answered 201; undefined if none came within the probe's time. */
  firstOk?: number;
  attempts: number;
  /** Canaries of the probe's ops (they are ops in the history too). */
  canaries: string[];
}

export interface History {
  ops: Op[];
  faults: Fault[];
  probes: LivenessProbe[];
  /** The broker services; with all of them out the chain is broken. */
  brokers: string[];
  /** What went wrong outside any one fault (a container restarted that no fault killed, an OOM kill). */
  observations: string[];
}

/** What core holds for one canary: a document's id, collection and content hash. */
export interface StoredDoc {
  id: string;
  collection: string;
  canary: string;
  contentHash: string;
}

/** The overall outcome of an op: ok if any attempt was; else info if any was; else fail. */
export function opOutcome(op: Op): Outcome {
  if (op.attempts.some((a) => a.outcome === 'ok')) return 'ok';
  if (op.attempts.some((a) => a.outcome === 'info')) return 'info';
  return op.attempts.length > 0 ? 'fail' : 'info';
}

/** Network errors after which the request surely never reached the server. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EADDRNOTAVAIL', 'ENETUNREACH', 'EHOSTUNREACH']);

/** Classifies one HTTP exchange (or its failure) as the client must read it. */
export function classify(res: { status: number; json?: unknown } | { networkCode: string }): Pick<Attempt, 'status' | 'code' | 'stored' | 'id' | 'network' | 'outcome'> {
  if ('networkCode' in res) return { status: 0, network: res.networkCode, outcome: NOT_SENT.has(res.networkCode) ? 'fail' : 'info' };
  const body = res.json as { id?: unknown; error?: { code?: unknown; stored?: unknown } } | undefined;
  if (res.status === 201) {
    const id = body?.id;
    return typeof id === 'string' && id.length > 0 ? { status: 201, id, outcome: 'ok' } : { status: 201, outcome: 'info' };
  }
  const code = typeof body?.error?.code === 'string' ? body.error.code : undefined;
  const stored = typeof body?.error?.stored === 'string' ? body.error.stored : undefined;
  const base = { status: res.status, ...(code !== undefined ? { code } : {}), ...(stored !== undefined ? { stored } : {}) };
  if (res.status >= 400 && res.status < 500) return { ...base, outcome: 'fail' };
  if (res.status >= 500 && stored === 'no') return { ...base, outcome: 'fail' };
  return { ...base, outcome: 'info' };
}

/**
 * JSON with object keys sorted at every level: the same text for the same value whatever
 * order the keys were written or stored in. Self-contained (it is also sent, as source
 * text, to run inside the core container next to the database).
 */
export function canonicalJson(value: unknown): string {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(o).sort()) out[k] = walk(o[k]);
      return out;
    }
    return v;
  };
  return JSON.stringify(walk(value));
}
