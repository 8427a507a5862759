import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { readJsonResponse, type JsonResponse } from '../../support/http-response';
import { canonicalJson, classify, opOutcome, type Attempt, type History, type LivenessProbe, type Op, type ReadCheck } from './history';

/**
 * The clients of the Jepsen-style test: they talk to the gateway's published HTTPS port as a
 * user on the host would, each request on a connection of its own (a connection refused is
 * then surely "not sent"), and record every attempt in the shared History.
 *
 * A keyed client sends an Idempotency-Key unique to the op and, after an indeterminate
 * answer, sends the same payload again with the same key. An unkeyed client retries the
 * same way without a key — as a naive client would — so its retries may store copies,
 * which the checker counts. After each 201 the client reads the record back.
 */
export interface Endpoint {
  port: number;
  ca: string;
}

export interface ClientOptions {
  endpoint: Endpoint;
  token: string;
  history: History;
  /** Every canary starts with this (the checker's filter). */
  canaryPrefix: string;
  /** A client gives up on an attempt after this (the gateway's own deadline is 10 s). */
  timeoutMs: number;
}

type Body = Record<string, unknown>;

export function contentHash(body: Body): string {
  return createHash('sha256').update(canonicalJson(body), 'utf8').digest('hex');
}

/** One HTTPS request; resolves with the answer or the network error's code. */
function exchange(ep: Endpoint, method: string, path: string, token: string, timeoutMs: number, body?: string, headers: Record<string, string> = {}): Promise<JsonResponse | { networkCode: string }> {
  return new Promise((resolve) => {
    const h: Record<string, string> = { ...headers, authorization: `Bearer ${token}` };
    if (body !== undefined) {
      h['content-type'] = 'application/json';
      h['content-length'] = String(Buffer.byteLength(body));
    }
    let settled = false;
    const done = (v: JsonResponse | { networkCode: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const req = request({ host: '127.0.0.1', port: ep.port, method, path, headers: h, ca: ep.ca, servername: 'localhost', agent: false }, (res) => {
      readJsonResponse(res).then(done, (err: NodeJS.ErrnoException) => done({ networkCode: err.code ?? err.message }));
    });
    const timer = setTimeout(() => {
      done({ networkCode: 'client timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => done({ networkCode: err.code ?? err.message }));
    req.end(body);
  });
}

export class Clients {
  private seq = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private readonly runId = randomBytes(3).toString('hex');
  /** Each op's payload, so a later retry sends exactly the same one. */
  private readonly bodies = new Map<string, Body>();

  constructor(private readonly opts: ClientOptions) {}

  /** A new op with a unique canary as its title, registered in the history. */
  newOp(client: string, collection: string, keyed: boolean, kind: Op['kind'], body: (canary: string) => Body): { op: Op; body: Body } {
    const canary = `${this.opts.canaryPrefix}${this.runId}-${client}-${this.seq++}`;
    const b = body(canary);
    const op: Op = { canary, client, collection, ...(keyed ? { key: `jk-${canary}` } : {}), contentHash: contentHash(b), attempts: [], reads: [], kind };
    this.opts.history.ops.push(op);
    this.bodies.set(canary, b);
    return { op, body: b };
  }

  /** Sends the op's payload once (with its key, if it has one) and records the attempt. */
  async attempt(op: Op, body: Body): Promise<Attempt> {
    const start = Date.now();
    const res = await exchange(this.opts.endpoint, 'POST', `/v1/records/${op.collection}`, this.opts.token, this.opts.timeoutMs, JSON.stringify(body), op.key ? { 'idempotency-key': op.key } : {});
    const a: Attempt = { start, end: Date.now(), ...classify(res) };
    op.attempts.push(a);
    if (a.outcome === 'ok' && a.id) op.reads.push(await this.readBack(op, a.id));
    return a;
  }

  /** GETs a record right after its 201; a 404 or other content is definite, 5xx and network errors are tried again. */
  private async readBack(op: Op, id: string): Promise<ReadCheck> {
    let detail = '';
    for (let i = 0; i < 3; i++) {
      const res = await exchange(this.opts.endpoint, 'GET', `/v1/records/${op.collection}/${id}`, this.opts.token, this.opts.timeoutMs);
      const at = Date.now();
      if ('networkCode' in res) detail = res.networkCode;
      else if (res.status === 200) {
        const data = (res.json as { data?: Body } | undefined)?.data;
        return data && contentHash(data) === op.contentHash ? { id, at, result: 'found' } : { id, at, result: 'different', detail: res.text.slice(0, 120) };
      } else if (res.status === 404) return { id, at, result: 'missing', detail: res.text.slice(0, 120) };
      else detail = `${res.status} ${res.text.slice(0, 80)}`;
      await sleep(300);
    }
    return { id, at: Date.now(), result: 'unverified', detail };
  }

  /** Sends until ok or a definite failure, at most 1 + `retries` times; the op's outcome. */
  async run(op: Op, body: Body, retries: number): Promise<void> {
    for (let i = 0; i <= retries; i++) {
      const a = await this.attempt(op, body);
      if (a.outcome !== 'info') return;
      await sleep(200 + 300 * i);
    }
  }

  /** `n` clients writing small notes until stop(); clients with an even number send keys. */
  start(n: number, paceMs: number, retries: number): void {
    for (let c = 0; c < n; c++) {
      const client = `${c % 2 === 0 ? 'k' : 'u'}${c}`;
      this.loops.push(
        (async () => {
          while (!this.stopped) {
            const { op, body } = this.newOp(client, 'notes', c % 2 === 0, 'load', (canary) => ({ title: canary, body: randomBytes(32 + (this.seq % 200)).toString('base64') }));
            await this.run(op, body, retries);
            await sleep(paceMs);
          }
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** `n` large writes at once (each sent once): what fills a broker's queue while core is away. */
  async burst(n: number, collection: string, body: (canary: string) => Body): Promise<Op[]> {
    const ops = Array.from({ length: n }, (_, i) => this.newOp(`b${i % 2 === 0 ? 'k' : 'u'}${i}`, collection, i % 2 === 0, 'burst', body));
    await Promise.all(ops.map(({ op, body: b }) => this.attempt(op, b)));
    return ops.map((o) => o.op);
  }

  /**
   * Liveness: from `at`, one fresh keyed write sent again and again (100 ms apart) until a
   * 201 or `giveUpMs`; records when the first 201 came.
   */
  async probe(label: string, at: number, giveUpMs = 30_000): Promise<LivenessProbe> {
    const p: LivenessProbe = { fault: label, healed: at, attempts: 0, canaries: [] };
    this.opts.history.probes.push(p);
    const { op, body } = this.newOp('probe', 'notes', true, 'probe', (canary) => ({ title: canary, body: 'liveness' }));
    p.canaries.push(op.canary);
    while (Date.now() < at + giveUpMs) {
      p.attempts += 1;
      const a = await this.attempt(op, body);
      if (a.outcome === 'ok') {
        p.firstOk = a.end;
        break;
      }
      await sleep(100);
    }
    return p;
  }

  /**
   * After every fault healed: each keyed op still indeterminate is sent again with its key
   * until it gets an answer that is not indeterminate (at most `timeoutMs`) — a retry with
   * the same key must converge on one record.
   */
  async settleKeyed(timeoutMs: number, parallel = 4): Promise<number> {
    const todo = this.opts.history.ops.filter((o) => o.key !== undefined && opOutcome(o) === 'info');
    const bodies = new Map<Op, Body>();
    for (const o of todo) bodies.set(o, this.bodyOf(o));
    const queue = [...todo];
    const until = Date.now() + timeoutMs;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        for (let op = queue.shift(); op; op = queue.shift()) {
          while (Date.now() < until) {
            const a = await this.attempt(op, bodies.get(op)!);
            if (a.outcome !== 'info') break;
            await sleep(250);
          }
        }
      }),
    );
    return todo.length;
  }

  private bodyOf(op: Op): Body {
    const b = this.bodies.get(op.canary);
    if (!b) throw new Error(`no payload kept for ${op.canary}`);
    return b;
  }
}
