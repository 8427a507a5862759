import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient } from './api-client';

/**
 * Client traffic through a gateway while something changes underneath (a key rotated, a
 * broker replaced): each writer stores a record and reads it back, over and over, and every
 * answer is tallied by outcome. "0 failed requests" is then `failures() === 0` with
 * `succeeded()` above a floor the test sets (its positive control: traffic really flowed
 * through the change, so a dead path cannot pass as zero failures).
 */
export interface WriteLoad {
  /** Outcome → count: "201", "200", "503 no_tunnel", "network ECONNRESET", ... */
  readonly tally: Map<string, number>;
  /** Requests answered as expected (a write's 201 and its read-back's 200 with the same content). */
  succeeded(): number;
  /** Every other outcome, each one a failed request. */
  failures(): number;
  /** The tally as one line, for the test's output. */
  summary(): string;
  /** Stops the writers and waits for their last requests to be answered. */
  stop(): Promise<void>;
}

export function startWriteLoad(api: ApiClient, token: string, opts: { collection?: string; writers?: number; pauseMs?: number } = {}): WriteLoad {
  const collection = opts.collection ?? 'notes';
  const run = randomBytes(3).toString('hex');
  const tally = new Map<string, number>();
  const count = (outcome: string): void => void tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
  let stopped = false;
  let seq = 0;

  async function once(): Promise<void> {
    const title = `load-${run}-${seq++}`;
    let id: string;
    try {
      const res = await api.post(collection, { title }, token, { 'idempotency-key': randomUUID() });
      const code = (res.json as { error?: { code?: string } } | undefined)?.error?.code;
      count(res.status === 201 ? '201' : `${res.status} ${code ?? ''}`.trim());
      if (res.status !== 201) return;
      id = (res.json as { id: string }).id;
    } catch (err) {
      return count(`network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      const res = await api.get(collection, id, token);
      const body = res.json as { data?: { title?: unknown }; error?: { code?: string } } | undefined;
      if (res.status === 200 && body?.data?.title !== title) return count('200 wrong content');
      count(res.status === 200 ? '200' : `${res.status} ${body?.error?.code ?? ''}`.trim());
    } catch (err) {
      count(`network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  const loops = Array.from({ length: opts.writers ?? 2 }, async () => {
    while (!stopped) {
      await once();
      await sleep(opts.pauseMs ?? 20);
    }
  });

  const succeeded = (): number => (tally.get('201') ?? 0) + (tally.get('200') ?? 0);
  return {
    tally,
    succeeded,
    failures: () => [...tally.values()].reduce((a, b) => a + b, 0) - succeeded(),
    summary: () => [...tally].map(([outcome, n]) => `${outcome} x${n}`).join(', '),
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}
