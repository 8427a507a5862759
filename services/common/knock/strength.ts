/**
 * How hard a time-based knock is to guess, and the floor the gateway and keygen refuse to
 * go below. Shared so that the gateway, keygen and the broker agree on the defaults.
 *
 * The sequence is the nonce port (any port of the range: free for the guesser) followed by
 * L-1 distinct ports of the other R-1, drawn from HMAC(secret, window, nonce). Without the
 * secret every ordered tail is equally likely, so one tail guess is right with chance
 * 1/N, N = (R-1)(R-2)…(R-L+1); W = 3 windows are accepted at once (clock skew), so a
 * completed guess opens with chance at most W/N. Each SYN can complete at most one attempt
 * (the one that started L-1 SYNs before it), whatever the number of source addresses, so
 *
 *   p_SYN ≤ W / N   per SYN, P(open within S SYNs) ≤ S·W/N, E[SYNs to open] ≥ N / (2W)
 *
 * (the last for any strategy, even one that never repeats a guess; a memoryless random
 * guesser needs N/W). The floor is E ≥ 2^64, i.e. log2(N) − log2(2W) ≥ 64.
 */
export const ACCEPTED_WINDOWS = 3;
export const GUESS_FLOOR_LOG2 = 64;
/** 8 knocks in 1000 ports: N ≈ 2^69.7, E ≥ 2^67.1 SYNs; sent in 80 ms at the broker's 10 ms gap. */
export const DEFAULT_KNOCK_LENGTH = 8;
export const DEFAULT_KNOCK_PORT_RANGE = '40000-40999';
export const DEFAULT_KNOCK_PORT_RANGE_BOUNDS: readonly [number, number] = [40000, 40999];

/** log2 of N = (R-1)(R-2)…(R-L+1): the ordered tails a guesser must choose from. */
export function tailSpaceLog2(rangeSize: number, length: number): number {
  let sum = 0;
  for (let k = 1; k < length; k++) sum += Math.log2(rangeSize - k);
  return sum;
}

/** Upper bound on the chance that one SYN opens the door: W / N. */
export function guessChancePerSyn(rangeSize: number, length: number): number {
  return ACCEPTED_WINDOWS / 2 ** tailSpaceLog2(rangeSize, length);
}

/** log2 of the least expected number of SYNs to open by guessing, for any strategy: N / (2W). */
export function guessWorkLog2(rangeSize: number, length: number): number {
  return tailSpaceLog2(rangeSize, length) - Math.log2(2 * ACCEPTED_WINDOWS);
}

/** Why these time-based settings are below the floor, or undefined. */
export function guessFloorProblem(rangeSize: number, length: number): string | undefined {
  const work = guessWorkLog2(rangeSize, length);
  if (work >= GUESS_FLOOR_LOG2) return undefined;
  return `a guesser needs only about 2^${work.toFixed(1)} SYNs (${rangeSize} ports, ${length} knocks); the floor is 2^${GUESS_FLOOR_LOG2}: lengthen the sequence or widen the range`;
}
