import { createHmac, randomInt } from 'node:crypto';

/**
 * Knock sequences, shared by the gateway (which recognises them) and the broker (which
 * sends them).
 *
 * - static: a fixed list of TCP ports, as knockd's `sequence =` (interoperable with its
 *   `knock` client).
 * - time-based: the first port is a fresh random nonce within the port range; the others
 *   are drawn from HMAC-SHA256(secret, window, nonce). A recorded knock is worthless after
 *   its window, and within it the gateway burns each (window, nonce) after one use — yet a
 *   broker that restarts, or reconnects twice in one window, simply draws another nonce
 *   instead of waiting for the next window.
 */
export type KnockSpec =
  | { mode: 'static'; ports: readonly number[] }
  | {
      mode: 'time';
      secret: Buffer;
      /**
       * During a knock-secret rotation's overlap (`nonstop-keygen rotate knock-secret`), the
       * secret being replaced: the gateway accepts sequences derived from either; the broker
       * knocks with `secret` and falls back to this one (broker/knock/secrets.ts).
       */
      previousSecret?: Buffer;
      /** Where `secret` was read from (broker): read again at every knock, with its `.previous`. */
      secretFile?: string;
      length: number;
      rangeStart: number;
      rangeEnd: number;
      periodMs: number;
    };

export type TimeSpec = Extract<KnockSpec, { mode: 'time' }>;

/** A sequence acceptable right now; `replay` names it for single use (time-based only). */
export interface Candidate {
  ports: readonly number[];
  replay?: { window: number; nonce: number };
}

export function windowOf(spec: { periodMs: number }, nowMs: number): number {
  return Math.floor(nowMs / spec.periodMs);
}

function rangeSize(spec: TimeSpec): number {
  return spec.rangeEnd - spec.rangeStart + 1;
}

/**
 * `count` distinct ports from [rangeStart, rangeEnd], none of them in `exclude`, drawn
 * without bias (rejection sampling on 16-bit draws) from HMAC-SHA256(secret, window, nonce).
 */
export function derivePorts(secret: Buffer, window: number, nonce: number, count: number, rangeStart: number, rangeEnd: number, exclude: readonly number[] = []): number[] {
  const size = rangeEnd - rangeStart + 1;
  if (size < (count + exclude.length) * 2) throw new RangeError(`port range of ${size} is too small for ${count} knocks`);
  const limit = Math.floor(65536 / size) * size;
  const ports: number[] = [];
  const input = Buffer.alloc(12);
  input.writeBigInt64BE(BigInt(window), 0);
  input.writeUInt32BE(nonce, 8);
  let block = 0;
  while (ports.length < count) {
    const digest = createHmac('sha256', secret).update('nonstop-knock-v2').update(input).update(Buffer.from([block++])).digest();
    for (let i = 0; i + 1 < digest.length && ports.length < count; i += 2) {
      const draw = digest.readUInt16BE(i);
      if (draw >= limit) continue;
      const port = rangeStart + (draw % size);
      if (!ports.includes(port) && !exclude.includes(port)) ports.push(port);
    }
  }
  return ports;
}

/** The whole time-based sequence for a window and nonce: the nonce's port, then the derived ones. */
export function timeSequence(spec: TimeSpec, window: number, nonce: number): number[] {
  const first = spec.rangeStart + nonce;
  return [first, ...derivePorts(spec.secret, window, nonce, spec.length - 1, spec.rangeStart, spec.rangeEnd, [first])];
}

/**
 * The candidates a time-based knock that started on `firstPort` at `nowMs` may complete:
 * neighbouring windows too (clock skew), derived from the secret and, during a rotation,
 * from the previous secret as well. A used (window, nonce) is burnt whichever secret it
 * came from, so the overlap adds no replay.
 */
export function timeCandidates(spec: TimeSpec, firstPort: number, nowMs: number): Candidate[] {
  const nonce = firstPort - spec.rangeStart;
  const n = windowOf(spec, nowMs);
  const secrets = spec.previousSecret ? [spec.secret, spec.previousSecret] : [spec.secret];
  return secrets.flatMap((secret) => [n - 1, n, n + 1].map((w) => ({ ports: timeSequence({ ...spec, secret }, w, nonce), replay: { window: w, nonce } })));
}

/** Whether `port` can open a knock: a static first port, or any port of the time-based range. */
export function isFirstPort(spec: KnockSpec, port: number): boolean {
  return spec.mode === 'static' ? spec.ports[0] === port : port >= spec.rangeStart && port <= spec.rangeEnd;
}

/** The sequence a broker sends now: the static list, or the current window with a fresh random nonce. */
export function sequenceToSend(spec: KnockSpec, nowMs: number, nonce: number = spec.mode === 'time' ? randomInt(rangeSize(spec)) : 0): number[] {
  return spec.mode === 'static' ? [...spec.ports] : timeSequence(spec, windowOf(spec, nowMs), nonce);
}

/** Checks a static sequence: no step may repeat the previous one (a repeat is indistinguishable from a retransmission). */
export function staticSequenceProblem(ports: readonly number[]): string | undefined {
  if (ports.length < 2) return 'expected at least 2 ports';
  for (let i = 1; i < ports.length; i++) {
    if (ports[i] === ports[i - 1]) return `port ${ports[i]} repeats at step ${i + 1}`;
  }
  return undefined;
}
