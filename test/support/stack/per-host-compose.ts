import { join } from 'node:path';
import { parse } from 'yaml';
import { runCommand, type CommandResult } from '../run-command';
import { REPO_ROOT } from './build';

/**
 * The per-host compose files of deploy/compose/ (one tier each), run the way an operator runs
 * them: the compose on this machine (the v2 plugin where it exists, else Debian's
 * docker-compose 1.29), `-f deploy/compose/<tier>.yaml --env-file <file>`, and nothing of
 * ours from the test process's environment, so only the files and the given settings count.
 */
export const TIERS = ['gateway', 'broker', 'core'] as const;
export type Tier = (typeof TIERS)[number];

export function perHostFile(tier: Tier): string {
  return join(REPO_ROOT, 'deploy', 'compose', `${tier}.yaml`);
}

let v2: Promise<boolean> | undefined;

/** Runs compose with `args` (after the global options), the environment being the process's without NONSTOP_* plus `env`. */
export async function compose(args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  v2 ??= runCommand('/usr/bin/docker', ['compose', 'version']).then((r) => r.code === 0);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NONSTOP_')));
  const opts = { env: { ...clean, ...env }, cwd: REPO_ROOT };
  return (await v2) ? runCommand('/usr/bin/docker', ['compose', ...args], opts) : runCommand('docker-compose', args, opts);
}

/** A resolved compose file (`compose config`), as parsed YAML. */
export interface ResolvedCompose {
  services: Record<string, Record<string, unknown>>;
  networks?: Record<string, Record<string, unknown> | null>;
  volumes?: Record<string, unknown>;
}

/** `config` of a compose file with `envFile` and `env`; throws with compose's stderr when it refuses. */
export async function resolvedConfig(file: string, envFile: string, env: Record<string, string> = {}): Promise<ResolvedCompose> {
  const res = await compose(['--env-file', envFile, '-f', file, 'config'], env);
  if (res.code !== 0) throw new Error(`compose config of ${file} exited ${res.code}: ${res.stderr}`);
  return parse(res.stdout) as ResolvedCompose;
}
