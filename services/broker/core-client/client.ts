import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool as UndiciPool, type Dispatcher } from 'undici';
import { ApiError, apiErrorBody } from '../../common/errors/api-error';
import { listQueryString, type ListQuery } from '../../common/http/list-query';
import { RECORD_BATCH_PATH, type RecordBatchItem, type RecordBatchResult } from '../../common/http/record-batch';
import { backoffDelay } from '../../common/lifecycle/backoff';

export interface CoreClientOptions {
  url: string;
  ca: string;
  cert: string;
  key: string;
  serverName: string | undefined;
  timeoutMs: number;
  maxInFlight: number;
  retries: number;
}

export interface CoreResponse {
  status: number;
  body: unknown;
}

/** The largest response body read from core; a reply to a gateway carries at most this. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const RETRYABLE_STATUS = new Set([502, 503]);
/** How long an idle connection to core is kept when core sends no keep-alive hint. */
const KEEP_ALIVE_MS = 60_000;

/**
 * An attempt that failed in a way worth retrying. `sent` says whether the whole request had
 * been written when it failed: before that core cannot have acted on it (not stored);
 * after, it may have (the outcome is unknown until a retry settles it).
 */
class TransientCoreError extends Error {
  constructor(
    message: string,
    readonly sent: boolean,
  ) {
    super(message);
  }
}

/** What the broker asks of core for one request. */
export interface CoreCall {
  requestId: string;
  collection: string;
  token: string;
  /** The client's Idempotency-Key, passed on so core keys the record by it. */
  key?: string | undefined;
  /** performance.now() by which the request's budget is spent. */
  deadline: number;
}

/** Counts the retries the client makes; the broker passes its Prometheus counter. */
export interface RetryCounter {
  inc(): void;
}

/** The TLS material the client presents and trusts (CORE_CA_FILE, CORE_CLIENT_CERT_FILE, CORE_CLIENT_KEY_FILE). */
export interface CoreTls {
  ca: string;
  cert: string;
  key: string;
}

/** One connection pool with the TLS material it was made with, and its requests in flight. */
interface Pool {
  pool: UndiciPool;
  inFlight: number;
  retiring: boolean;
}

/**
 * The broker's HTTPS client for core: mutual TLS with the deployment CA pinned (no system
 * CAs), keep-alive connections, at most `maxInFlight` requests at once (the pool queues
 * the rest), a timeout per attempt, and retries with backoff for failures that leave the
 * outcome unknown. Retrying is safe because every insert is keyed by its request id.
 * Each retry is counted on `retried` (nonstop_broker_core_retries_total in the broker).
 *
 * New TLS material (a rotated client certificate or CA bundle, useTls()) is applied make-
 * before-break: a new pool takes every attempt from then on (retries included), and the old
 * pool is closed once the attempts it carries have finished, so none is cut. Each pool
 * holds at most `maxInFlight` sockets; for the moment both exist core may see twice that.
 */
export class CoreClient {
  private pool: Pool;
  /** Pools replaced by useTls() whose last attempts are still running. */
  private readonly retiringPools: Pool[] = [];
  private readonly base: URL;

  constructor(
    private readonly opts: CoreClientOptions,
    private readonly retried: RetryCounter,
  ) {
    this.base = new URL(opts.url);
    this.pool = this.newPool(opts);
  }

  private newPool(tls: CoreTls): Pool {
    // undici's Pool rather than node:https: its HTTP/1.1 parser (llhttp in WebAssembly) and
    // its dispatch callbacks skip the per-request IncomingMessage/ClientRequest streams, the
    // cost issue 13's profile found in this client (bench/core-client.ts measures both).
    // One request per connection at a time (no pipelining), as the agent did; its connector
    // sets TCP_NODELAY on every socket (small requests must not wait on delayed ACKs) and
    // caches TLS sessions per pool, so a new pool never resumes a session of the old identity.
    const pool = new UndiciPool(this.base.origin, {
      connections: this.opts.maxInFlight,
      pipelining: 1,
      // Every attempt is bounded by its own timer (once()); undici's would only add work.
      headersTimeout: 0,
      bodyTimeout: 0,
      connectTimeout: this.opts.timeoutMs,
      // Idle connections are kept as the agent kept them, until core's keep-alive hint
      // (Keep-Alive: timeout=…) says core would close them.
      keepAliveTimeout: KEEP_ALIVE_MS,
      connect: {
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        servername: this.opts.serverName ?? this.base.hostname,
        minVersion: 'TLSv1.3',
      },
      // HTTP/1.1 only: core serves no HTTP/2, so ALPN offers none.
      allowH2: false,
    });
    return { pool, inFlight: 0, retiring: false };
  }

  /** Connects with `tls` from now on; the connections made before close once idle for good. */
  useTls(tls: CoreTls): void {
    const old = this.pool;
    this.pool = this.newPool(tls);
    old.retiring = true;
    if (old.inFlight === 0) closePool(old);
    else this.retiringPools.push(old);
  }

  /** Requests in flight on pools replaced by useTls() and not yet closed (0 once the switch is complete). */
  get retiringInFlight(): number {
    return this.retiringPools.reduce((n, p) => n + p.inFlight, 0);
  }

  insert(call: CoreCall, record: Record<string, unknown>): Promise<CoreResponse> {
    return this.call('POST', `/v1/records/${call.collection}`, callHeaders(call), call.deadline, JSON.stringify(record));
  }

  read(call: CoreCall, recordId: string): Promise<CoreResponse> {
    return this.call('GET', `/v1/records/${call.collection}/${recordId}`, callHeaders(call), call.deadline, undefined);
  }

  /** One page of a collection; the query is re-encoded from its checked fields, never passed on as text. */
  list(call: CoreCall, query: ListQuery): Promise<CoreResponse> {
    return this.call('GET', `/v1/records/${call.collection}${listQueryString(query)}`, callHeaders(call), call.deadline, undefined);
  }

  /** Erase is idempotent at core, so it is retried like a read. */
  erase(call: CoreCall, recordId: string): Promise<CoreResponse> {
    return this.call('DELETE', `/v1/records/${call.collection}/${recordId}`, callHeaders(call), call.deadline, undefined);
  }

  /**
   * Several inserts as one request (common/http/record-batch.ts), retried whole like an
   * insert (each record is idempotent by its id). Resolves with core's answer per record
   * in order; rejects as insert() does when core gave none.
   */
  async insertBatch(items: readonly RecordBatchItem[], deadline: number): Promise<RecordBatchResult[]> {
    const res = await this.call('POST', RECORD_BATCH_PATH, {}, deadline, JSON.stringify({ records: items }));
    const results = (res.body as { results?: unknown } | null)?.results;
    if (res.status !== 200 || !Array.isArray(results) || results.length !== items.length) {
      // A refusal of the whole batch (core's own error) is each record's answer.
      const answer = res.status >= 400 ? { status: res.status, body: res.body } : { status: 502, body: apiErrorBody('internal', 'storage sent an unreadable answer') };
      return items.map(() => answer);
    }
    return results.map((r: unknown) => {
      const { status, body } = (r ?? {}) as { status?: unknown; body?: unknown };
      return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599 ? { status, body } : { status: 502, body: apiErrorBody('internal', 'storage sent an unreadable answer') };
    });
  }

  /**
   * Attempts until core answers, the retries are used up or the budget is spent. The error
   * then says what the client may conclude: `deadline_exceeded` (the budget is spent: maybe
   * stored), `unavailable` (core refused every attempt with time left: not stored) or
   * `outcome_unknown` (an attempt may have reached it: maybe stored).
   */
  private async call(method: 'GET' | 'POST' | 'DELETE', path: string, headers: Record<string, string>, deadline: number, body: string | undefined): Promise<CoreResponse> {
    let maybeArrived = false;
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      const left = Math.floor(deadline - performance.now());
      if (left <= 0) break;
      if (attempt > 0) this.retried.inc();
      try {
        return await this.once(method, path, headers, body, left, Math.min(performance.now() + this.opts.timeoutMs, deadline));
      } catch (err) {
        if (!(err instanceof TransientCoreError)) throw err;
        maybeArrived ||= err.sent;
        if (attempt < this.opts.retries) await sleep(Math.min(backoffDelay({ baseMs: 50, capMs: 1000, minMs: 10 }, attempt), Math.max(0, deadline - performance.now())));
      }
    }
    // A spent budget is 504 even when no attempt of this call was written (a frozen core
    // takes TCP connections and never answers TLS): "not stored" holds for these attempts
    // but not for the client's key, whose earlier attempt may still reach core, and the
    // gateway answers 504 at this same instant. Only refusals with time left are 503.
    if (deadline - performance.now() <= 0) throw new ApiError('deadline', 'storage did not answer in time; the record may be stored');
    if (!maybeArrived) throw new ApiError('unavailable', 'storage is unavailable; nothing was stored');
    throw new ApiError('outcomeUnknown', 'the connection to storage failed after the request was sent; the record may be stored');
  }

  /** One attempt, given up at `end` (performance.now()): the timeout, or the budget's end if sooner. */
  private once(method: 'GET' | 'POST' | 'DELETE', path: string, callHeaders: Record<string, string>, body: string | undefined, budgetMs: number, end: number): Promise<CoreResponse> {
    // The pool current when the attempt starts carries it to the end, whatever useTls() does meanwhile.
    const pool = this.pool;
    pool.inFlight++;
    return new Promise<CoreResponse>((resolve, reject) => {
      const headers: Record<string, string> = {
        ...callHeaders,
        // Core enforces what is left of the budget on its database operation.
        'x-request-budget-ms': String(budgetMs),
        accept: 'application/json',
      };
      // undici writes content-length from the body's byte length.
      if (body !== undefined) headers['content-type'] = 'application/json';
      // Written whole: from onRequestSent on, core may act on the request.
      let sent = false;
      let settled = false;
      let controller: Dispatcher.DispatchController | null = null;
      let status = 502;
      const chunks: Buffer[] = [];
      let size = 0;
      const fail = (err: TransientCoreError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      // The whole attempt, from the queue to the last byte, ends by `end`: a request still
      // waiting for a connection then is dropped when it reaches one (onRequestStart),
      // before a byte of it is written. A timer may fire a little early (it counts from the
      // event loop's cached clock); an attempt cut short of the budget's end would turn a
      // spent budget (504) into a refusal (503), so it waits out the rest.
      const expire = (): void => {
        const rest = end - performance.now();
        if (rest > 0) {
          timer = setTimeout(expire, Math.ceil(rest));
          return;
        }
        const err = new TransientCoreError('core request timed out', sent);
        fail(err);
        controller?.abort(err);
      };
      let timer = setTimeout(expire, Math.ceil(end - performance.now()));
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          controller = c;
          if (settled) c.abort(new TransientCoreError('core request timed out', false));
        },
        onRequestSent: () => {
          sent = true;
        },
        onResponseStart: (_c, statusCode) => {
          status = statusCode;
        },
        onResponseData: (c, chunk) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) c.abort(new TransientCoreError('core response too large', true));
          else chunks.push(chunk);
        },
        onResponseEnd: () => {
          this.release(pool);
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          // 503: core could not reach its database (not stored). 502 from core is a lost
          // database connection after sending (maybe stored); retrying settles either.
          if (RETRYABLE_STATUS.has(status)) return reject(new TransientCoreError(`core answered ${status}`, status !== 503));
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
          } catch {
            return resolve({ status: 502, body: apiErrorBody('internal', 'storage sent an unreadable answer') });
          }
          resolve({ status, body: parsed });
        },
        // Every transport failure (refused, reset, TLS, timed out, closed pool): the
        // attempt is retried, and `sent` says whether core may have acted on it.
        onResponseError: (_c, err) => {
          this.release(pool);
          fail(err instanceof TransientCoreError ? err : new TransientCoreError(err.message, sent));
        },
      };
      pool.pool.dispatch({ method, path, headers, body }, handler);
    });
  }

  /** Called once per attempt, when undici is done with it (answered, failed or dropped after a timeout). */
  private release(pool: Pool): void {
    pool.inFlight--;
    if (!pool.retiring || pool.inFlight > 0) return;
    // The response is read whole; no request is left on this pool.
    closePool(pool);
    this.retiringPools.splice(this.retiringPools.indexOf(pool), 1);
  }

  /** Ends every connection now; attempts still running fail as a dropped connection does. */
  close(): void {
    for (const p of [this.pool, ...this.retiringPools.splice(0)]) {
      // Destroyed here: release() must not close it again when its attempts fail.
      p.retiring = false;
      void p.pool.destroy();
    }
  }
}

/** Closes a pool none of whose requests is left: its idle connections end gracefully. */
function closePool(p: Pool): void {
  void p.pool.close();
}

function callHeaders(call: CoreCall): Record<string, string> {
  const headers: Record<string, string> = { authorization: `Bearer ${call.token}`, 'x-request-id': call.requestId };
  if (call.key !== undefined) headers['idempotency-key'] = call.key;
  return headers;
}
