import { existsSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../common/errors/config-error';
import { previousOf, syncDir } from '../common/pki/files';
import type { Logger } from '../common/log/logger';
import type { KeygenEnv } from './env';
import { refreshAllKeyDates } from './key-dates';
import type { KeyLayout } from './layout';

/**
 * Key rotation with an overlap (`nonstop-keygen rotate <what>`, then `retire <what>`), one
 * entry per kind of key. The rule every entry follows, so that no connection fails across a
 * rotation whatever order the tiers notice their files in:
 *
 *   rotate: the new key is created; every side that checks the key accepts old and new;
 *           the side that presents it switches to the new one where it cannot fall back
 *           (after the checking side's files are written), or holds both and tries the new
 *           one first where it can.
 *   retire: the old key is dropped everywhere; nothing presents it any more.
 *
 * Services follow their files (or reload on SIGHUP): no restart in either step.
 */
export interface RotationContext {
  layout: KeyLayout;
  env: KeygenEnv;
  log: Logger;
  /** Arguments after `<what>` (e.g. a broker's name). */
  args: string[];
}

export interface Rotation {
  /** One line for `nonstop-keygen rotate` without arguments. */
  describe: string;
  rotate(ctx: RotationContext): Promise<void>;
  retire(ctx: RotationContext): Promise<void>;
}

/** `rotate <what>` refuses while any of `paths` still has its old key beside it: one overlap at a time. */
export function refuseDuringOverlap(what: string, ...paths: string[]): void {
  const open = paths.map(previousOf).filter((p) => existsSync(p));
  if (open.length > 0) throw new ConfigError([`rotate ${what}: ${open.join(', ')} exists, a rotation is in progress; retire ${what} first`]);
}

/** `retire <what>` refuses when none of `paths` has an old key beside it. */
export function refuseWithoutOverlap(what: string, ...paths: string[]): void {
  if (!paths.some((p) => existsSync(previousOf(p)))) throw new ConfigError([`retire ${what}: no ${paths.map(previousOf).join(' or ')}, nothing to retire`]);
}

/** Removes the old key beside each of `paths`, in that order, each removal synced to disk. */
export function removePrevious(...paths: string[]): void {
  for (const p of paths) {
    rmSync(previousOf(p), { force: true });
    syncDir(dirname(p));
  }
}

/** Refuses arguments after `<what>`: the key's owner comes from keygen's environment (`whose`). */
export function noArguments(what: string, ctx: RotationContext, whose: string): void {
  if (ctx.args.length > 0) throw new ConfigError([`${what}: takes no arguments (${whose}), got ${JSON.stringify(ctx.args.join(' '))}`]);
}

/** Every key `rotate` knows, by the name operators type. Each entry lives in rotation/<name>.ts. */
const ROTATIONS: Record<string, Rotation> = {};

export function registerRotation(name: string, rotation: Rotation): void {
  ROTATIONS[name] = rotation;
}

export async function runRotation(step: 'rotate' | 'retire', args: string[], ctx: Omit<RotationContext, 'args'>): Promise<void> {
  const [what, ...rest] = args;
  const rotation = what === undefined ? undefined : ROTATIONS[what];
  if (!rotation) {
    const known = Object.entries(ROTATIONS).map(([name, r]) => `${name} (${r.describe})`);
    throw new ConfigError([`${step}: expected one of ${known.join(', ') || 'none'}, got ${JSON.stringify(what ?? '')}`]);
  }
  await rotation[step]({ ...ctx, args: rest });
  // Here rather than in each module: a rotated key (and its `.previous`) is dated however it was rotated.
  refreshAllKeyDates(ctx.layout, ctx.env.KEY_LIFETIME_DAYS, ctx.log);
}
