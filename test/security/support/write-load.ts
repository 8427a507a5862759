import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient, ApiResponse } from '../../support/stack/api-client';
import type { Stack } from '../../support/stack/stack';
import { queryCore } from '../../support/stack/core-db';

/** One HTTP attempt at writing a logical record, as the client saw it. */
export interface Attempt {
  /** Client clock, ms: when the request was sent and when its answer (or error) came. */
  start: number;
  end: number;
  /** HTTP status, or 0 when the connection failed (refused, reset, client timeout). */
  status: number;
  /** `error.code` of a JSON error body; undefined for a 201 or a body that is not one. */
  code: string | undefined;
  network: string | undefined;
}

/** One logical record: one Idempotency-Key, however many times it is sent. */
export interface LogicalRecord {
  title: string;
  key: string;
  body: Record<string, unknown>;
  /** The id of the first 201; every later 201 for this key must carry the same one. */
  id: string | undefined;
  /** Every id a 201 for this key carried (more than one would mean two records). */
  ids: Set<string>;
  attempts: Attempt[];
}

export interface WriteLoadOptions {
  /** The client to use for the next request (the gateway's host port changes on restart). */
  api: () => ApiClient;
  token: string;
  collection: string;
  /** Title prefix of this load's records; letters, digits and - only. */
  prefix: string;
  writers: number;
  /** Pause after each attempt, per writer; keeps the load bounded and under nginx's rate limit. */
  paceMs: number;
  /** How often a writer sends a refused record again (same key) before it moves on. */
  retries: number;
  /** Upper bound on logical records (the load stops by itself there). */
  maxRecords: number;
  body?: (title: string) => Record<string, unknown>;
}

function errorCode(res: ApiResponse): string | undefined {
  const code = (res.json as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A bounded write load from the host: `writers` clients in parallel, each writing new
 * records one at a time with an Idempotency-Key unique per logical record, retrying a
 * refused one a few times (same key, so the same request) and then moving on. It keeps
 * every attempt so a test can say afterwards which records were acknowledged, what the
 * clients saw during a fault, and whether a key was ever answered with two ids.
 */
export class WriteLoad {
  readonly records: LogicalRecord[] = [];
  private stopped = false;
  private done: Promise<void> | undefined;
  private seq = 0;

  constructor(private readonly opts: WriteLoadOptions) {}

  start(): void {
    this.done = Promise.all(Array.from({ length: this.opts.writers }, (_, w) => this.writer(w))).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private newRecord(writer: number): LogicalRecord {
    const title = `${this.opts.prefix}-${writer}-${this.seq++}`;
    const rec: LogicalRecord = { title, key: `key-${title}`, body: this.opts.body?.(title) ?? { title }, id: undefined, ids: new Set(), attempts: [] };
    this.records.push(rec);
    return rec;
  }

  private async writer(w: number): Promise<void> {
    while (!this.stopped && this.records.length < this.opts.maxRecords) {
      const rec = this.newRecord(w);
      for (let i = 0; i <= this.opts.retries && !this.stopped; i++) {
        if ((await this.send(rec)).status === 201) break;
        await sleep(this.opts.paceMs + 100 * i);
      }
      await sleep(this.opts.paceMs);
    }
  }

  /** Sends one record once and records the attempt. */
  async send(rec: LogicalRecord): Promise<Attempt> {
    const start = Date.now();
    let attempt: Attempt;
    try {
      const res = await this.opts.api().post(this.opts.collection, rec.body, this.opts.token, { 'idempotency-key': rec.key });
      attempt = { start, end: Date.now(), status: res.status, code: res.status === 201 ? undefined : errorCode(res), network: undefined };
      if (res.status === 201) {
        const id = (res.json as { id?: unknown } | undefined)?.id;
        const text = typeof id === 'string' ? id : `<no id in ${res.text.slice(0, 80)}>`;
        rec.ids.add(text);
        rec.id ??= text;
      }
    } catch (err) {
      attempt = { start, end: Date.now(), status: 0, code: undefined, network: (err as Error).message };
    }
    rec.attempts.push(attempt);
    return attempt;
  }

  /**
   * Sends every record that has no 201 yet again (same key) until each gets one, a few at
   * a time; throws with the last answers if some do not within `timeoutMs`.
   */
  async retryUnacknowledged(timeoutMs: number, parallel = 4): Promise<number> {
    const todo = this.records.filter((r) => r.id === undefined);
    const deadline = Date.now() + timeoutMs;
    const queue = [...todo];
    const worker = async (): Promise<void> => {
      for (let rec = queue.shift(); rec; rec = queue.shift()) {
        while ((await this.send(rec)).status !== 201) {
          if (Date.now() > deadline) return;
          await sleep(250);
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, () => worker()));
    const left = todo.filter((r) => r.id === undefined);
    if (left.length > 0) {
      const last = left.slice(0, 5).map((r) => `${r.title}: ${JSON.stringify(r.attempts.at(-1))}`);
      throw new Error(`${left.length} of ${todo.length} records were still refused after ${timeoutMs} ms of retries: ${last.join('; ')}`);
    }
    return todo.length;
  }

  get acknowledged(): number {
    return this.records.filter((r) => r.id !== undefined).length;
  }

  attempts(): Attempt[] {
    return this.records.flatMap((r) => r.attempts);
  }

  /** Waits until `n` more records than now have been acknowledged. */
  async waitForMoreAcks(n: number, timeoutMs: number): Promise<void> {
    const target = this.acknowledged + n;
    const deadline = Date.now() + timeoutMs;
    while (this.acknowledged < target) {
      if (Date.now() > deadline) throw new Error(`the load got ${this.acknowledged} acknowledgements, not ${target}, within ${timeoutMs} ms; last answers: ${JSON.stringify(this.attempts().slice(-5))}`);
      await sleep(100);
    }
  }

  /** Every answer seen, as "status code" (e.g. "504 deadline_exceeded", "0 <network error>"), with counts. */
  summary(attempts = this.attempts()): Record<string, number> {
    const out: Record<string, number> = {};
    for (const a of attempts) {
      const k = a.status === 0 ? `network ${a.network ?? ''}` : `${a.status}${a.code ? ` ${a.code}` : ''}`;
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }
}

/** What core holds for a title prefix: [_id, data.title] per document. */
export async function storedRecords(stack: Stack, prefix: string): Promise<[string, string][]> {
  if (!/^[A-Za-z0-9-]+$/.test(prefix)) throw new Error(`unsafe prefix ${prefix}`);
  return queryCore<[string, string][]>(
    stack,
    // Content is encrypted: every record is decrypted, then filtered by its title.
    `records.find({}).toArray().then((docs) => docs.map((d) => [d._id, plain(d).title]).filter(([, t]) => typeof t === 'string' && t.startsWith('${prefix}-')))`,
  );
}

/**
 * Checks what core holds against what the clients were told: every acknowledged record is
 * there exactly once under the id the client got, no title is stored twice, nothing is
 * stored that the load never sent, and no key was ever answered with two ids. Returns a
 * list of problems (empty when all holds).
 */
export function exactlyOnceProblems(load: WriteLoad, stored: [string, string][]): string[] {
  const problems: string[] = [];
  const byTitle = new Map<string, string[]>();
  for (const [id, title] of stored) byTitle.set(title, [...(byTitle.get(title) ?? []), id]);
  const known = new Map(load.records.map((r) => [r.title, r]));
  for (const [title, ids] of byTitle) {
    if (ids.length > 1) problems.push(`${title} stored ${ids.length} times (${ids.join(', ')})`);
    if (!known.has(title)) problems.push(`${title} stored but never sent`);
  }
  for (const r of load.records) {
    if (r.ids.size > 1) problems.push(`${r.title} acknowledged with ${r.ids.size} different ids`);
    if (r.id === undefined) continue;
    const ids = byTitle.get(r.title) ?? [];
    if (ids.length === 0) problems.push(`${r.title} acknowledged (${r.id}) but not stored`);
    else if (ids[0] !== r.id) problems.push(`${r.title} acknowledged as ${r.id} but stored as ${ids[0]}`);
  }
  return problems;
}
