import type { Server } from 'node:net';
import { ConfigError } from '../errors/config-error';
import { createLogger, type Logger } from '../log/logger';
import { Lifecycle, installProcessHandlers } from './shutdown';

/**
 * The shape of every service's entry process: parse configuration once (a bad value exits
 * 2 with one line naming each variable), create the logger and lifecycle, install the
 * signal handlers, start; if starting fails, undo what did start and exit 1 with the
 * reason on one line.
 */
export function runService<C extends { logLevel: string; shutdownTimeoutMs: number }>(
  name: string,
  load: () => C,
  start: (config: C, log: Logger, lifecycle: Lifecycle) => Promise<void>,
): void {
  let config: C;
  try {
    config = load();
  } catch (err) {
    exitOnStartupError(name, err);
  }
  const log = createLogger(name, config.logLevel);
  const lifecycle = new Lifecycle(log);
  installProcessHandlers(lifecycle, log, config.shutdownTimeoutMs);
  start(config, log, lifecycle).catch(async (err: unknown) => {
    await lifecycle.close(10_000);
    exitOnStartupError(name, err);
  });
}

function exitOnStartupError(name: string, err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${name}: config error: ${err.problems.join('; ')}\n`);
    process.exit(2);
  }
  process.stderr.write(`${name}: cannot start: ${(err as Error).message}\n`);
  process.exit(1);
}

/** Closes a server and resolves once it has (for lifecycle closers). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
