import { createHmac } from 'node:crypto';

/**
 * Knock sequences, shared by the gateway (which recognises them) and the broker (which
 * sends them).
 *
 * - static: a fixed list of TCP ports, as knockd's `sequence =` (interoperable with its
 *   `knock` client).
 * - time-based: the ports for time window n are drawn from HMAC-SHA256(secret, n) over a
 *   port range, so a recorded knock is worthless once its window has passed.
 */
export type KnockSpec =
  | { mode: 'static'; ports: readonly number[] }
  | { mode: 'time'; secret: Buffer; length: number; rangeStart: number; rangeEnd: number; periodMs: number };

/** A sequence acceptable right now; `replayKey` names it for single use (time-based only). */
export interface Candidate {
  ports: readonly number[];
  replayKey?: string;
}

export function windowOf(spec: { periodMs: number }, nowMs: number): number {
  return Math.floor(nowMs / spec.periodMs);
}

/**
 * Ports of time window `window`: distinct ports from [rangeStart, rangeEnd], unbiased
 * (rejection sampling on 16-bit draws), as many as `length`.
 */
export function derivePorts(secret: Buffer, window: number, length: number, rangeStart: number, rangeEnd: number): number[] {
  const size = rangeEnd - rangeStart + 1;
  if (size < length * 2) throw new RangeError(`port range of ${size} is too small for ${length} knocks`);
  const limit = Math.floor(65536 / size) * size;
  const ports: number[] = [];
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(window));
  let block = 0;
  while (ports.length < length) {
    const digest = createHmac('sha256', secret).update('nonstop-knock-v1').update(counter).update(Buffer.from([block++])).digest();
    for (let i = 0; i + 1 < digest.length && ports.length < length; i += 2) {
      const draw = digest.readUInt16BE(i);
      if (draw >= limit) continue;
      const port = rangeStart + (draw % size);
      if (!ports.includes(port)) ports.push(port);
    }
  }
  return ports;
}

/** The sequences a gateway accepts at `nowMs`: for time-based, the neighbouring windows too (clock skew). */
export function candidatesAt(spec: KnockSpec, nowMs: number): Candidate[] {
  if (spec.mode === 'static') return [{ ports: spec.ports }];
  const n = windowOf(spec, nowMs);
  return [n - 1, n, n + 1].map((w) => ({
    ports: derivePorts(spec.secret, w, spec.length, spec.rangeStart, spec.rangeEnd),
    replayKey: `w${w}`,
  }));
}

/** The sequence a broker sends for window `window` (time-based) or the static list. */
export function sequenceFor(spec: KnockSpec, window: number): number[] {
  return spec.mode === 'static' ? [...spec.ports] : derivePorts(spec.secret, window, spec.length, spec.rangeStart, spec.rangeEnd);
}

/** Every port that can be part of a knock: the gateway drops all of them silently. */
export function knockPorts(spec: KnockSpec): { ports: number[] } | { range: [number, number] } {
  return spec.mode === 'static' ? { ports: [...new Set(spec.ports)].sort((a, b) => a - b) } : { range: [spec.rangeStart, spec.rangeEnd] };
}

/** Checks a static sequence: no step may repeat the previous one (a repeat is indistinguishable from a retransmission). */
export function staticSequenceProblem(ports: readonly number[]): string | undefined {
  if (ports.length < 2) return 'expected at least 2 ports';
  for (let i = 1; i < ports.length; i++) {
    if (ports[i] === ports[i - 1]) return `port ${ports[i]} repeats at step ${i + 1}`;
  }
  return undefined;
}
