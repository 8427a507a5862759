import { Agent, request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, apiErrorBody } from '../../common/errors/api-error';
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

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const RETRYABLE_STATUS = new Set([502, 503]);

class TransientCoreError extends Error {}
/** An attempt that got no answer within its time: the caller hears "deadline", not "unavailable". */
class CoreTimeoutError extends TransientCoreError {}

/** Counts the retries the client makes; the broker passes its Prometheus counter. */
export interface RetryCounter {
  inc(): void;
}

/**
 * The broker's HTTPS client for core: mutual TLS with the deployment CA pinned (no system
 * CAs), keep-alive connections, at most `maxInFlight` requests at once (the agent queues
 * the rest), a timeout per attempt, and retries with backoff for failures that leave the
 * outcome unknown. Retrying is safe because every insert is keyed by its request id.
 * Each retry is counted on `retried` (nonstop_broker_core_retries_total in the broker).
 */
export class CoreClient {
  private readonly agent: Agent;
  private readonly base: URL;

  constructor(
    private readonly opts: CoreClientOptions,
    private readonly retried: RetryCounter,
  ) {
    this.base = new URL(opts.url);
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: opts.maxInFlight,
      maxFreeSockets: opts.maxInFlight,
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      servername: opts.serverName ?? this.base.hostname,
      minVersion: 'TLSv1.3',
    });
  }

  insert(requestId: string, collection: string, token: string, record: Record<string, unknown>, deadline: number): Promise<CoreResponse> {
    return this.call('POST', `/v1/records/${collection}`, requestId, token, JSON.stringify(record), deadline);
  }

  read(requestId: string, collection: string, recordId: string, token: string, deadline: number): Promise<CoreResponse> {
    return this.call('GET', `/v1/records/${collection}/${recordId}`, requestId, token, undefined, deadline);
  }

  private async call(method: 'GET' | 'POST', path: string, requestId: string, token: string, body: string | undefined, deadline: number): Promise<CoreResponse> {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (attempt > 0) this.retried.inc();
      try {
        return await this.once(method, path, requestId, token, body, Math.min(this.opts.timeoutMs, left));
      } catch (err) {
        if (!(err instanceof TransientCoreError)) throw err;
        lastError = err;
        if (attempt < this.opts.retries) await sleep(backoffDelay({ baseMs: 50, capMs: 1000, minMs: 10 }, attempt));
      }
    }
    if (lastError instanceof CoreTimeoutError) throw new ApiError('deadline', 'storage did not answer in time');
    throw new ApiError('unavailable', 'storage is unavailable');
  }

  private once(method: string, path: string, requestId: string, token: string, body: string | undefined, timeoutMs: number): Promise<CoreResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'x-request-id': requestId, accept: 'application/json' };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(body));
      }
      const req = request(
        { protocol: 'https:', hostname: this.base.hostname, port: this.base.port || 443, method, path, headers, agent: this.agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('core response too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            const status = res.statusCode ?? 502;
            if (RETRYABLE_STATUS.has(status)) return reject(new TransientCoreError(`core answered ${status}`));
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              parsed = apiErrorBody('internal', 'storage sent an unreadable answer');
              return resolve({ status: 502, body: parsed });
            }
            resolve({ status, body: parsed });
          });
          res.on('error', (err) => reject(new TransientCoreError(err.message)));
        },
      );
      req.on('socket', (socket) => socket.setNoDelay(true));
      req.on('timeout', () => req.destroy(new CoreTimeoutError('core request timed out')));
      req.on('error', (err) => reject(err instanceof TransientCoreError ? err : new TransientCoreError(err.message)));
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
