import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { syncDir } from '../../common/pki/files';
import type { ReplayState } from './tracker';

/**
 * The gateway's record of used time-based knocks, on its volume, so a knock recorded off
 * the wire cannot be replayed after a restart (fwknop keeps its digest cache on disk for
 * the same reason). It holds only what the tracker could still accept — a few periods'
 * worth of (window, nonce) pairs — and the tracker caps how many that can be.
 *
 * Written whole on every change (rare: one per knock that opens), crash-safe: written
 * and synced under a temporary name, renamed over the old file, the directory synced. A
 * power cut leaves the old record or the new one, never a torn one.
 */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

const fileSchema = z
  .object({
    version: z.literal(1),
    periodMs: z.number().int().positive(),
    burnt: z.array(z.tuple([z.number().int(), z.number().int().min(0), z.number().int()])),
    refuseThrough: z.tuple([z.number().int(), z.number().int()]).nullable(),
  })
  .strict();

export type ReplayLoad =
  /** The record as saved (empty when there was none, or when it was kept for another period). */
  | { state: ReplayState; lost?: undefined }
  /** The record exists but cannot be read or trusted: the caller must assume the worst. */
  | { state?: undefined; lost: string };

export class ReplayStore {
  constructor(
    readonly path: string,
    private readonly periodMs: number,
  ) {}

  load(): ReplayLoad {
    let text: string;
    try {
      if (statSync(this.path).size > MAX_FILE_BYTES) return { lost: `larger than ${MAX_FILE_BYTES} bytes` };
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: { burnt: [] } };
      return { lost: `unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return { lost: 'not valid JSON' };
    }
    const parsed = fileSchema.safeParse(raw);
    if (!parsed.success) return { lost: 'not a replay record of this version' };
    // Window numbers of another period name other times: none of them can match a knock now.
    if (parsed.data.periodMs !== this.periodMs) return { state: { burnt: [] } };
    const burnt = parsed.data.burnt.map(([window, nonce, untilMs]) => ({ window, nonce, untilMs }));
    const r = parsed.data.refuseThrough;
    return { state: r ? { burnt, refuseThrough: { window: r[0], untilMs: r[1] } } : { burnt } };
  }

  /** Replaces the record with `state`; throws if it could not be made durable. */
  save(state: ReplayState): void {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const body = {
      version: 1,
      periodMs: this.periodMs,
      burnt: state.burnt.map((b) => [b.window, b.nonce, b.untilMs]),
      refuseThrough: state.refuseThrough ? [state.refuseThrough.window, state.refuseThrough.untilMs] : null,
    };
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(body)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    syncDir(dir);
  }
}
