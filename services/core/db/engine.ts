import { join } from 'node:path';
import type { DbConfig } from '../config';

/** The database account the core service (and nonstop-admin) uses. */
export const DB_USER = 'nonstop';
export const DB_NAME = 'nonstop';

export interface EngineCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Directories that must exist before start. */
  dirs: string[];
}

/**
 * How each engine is started: on loopback only, authentication on, data under DATA_DIR.
 * Pure.
 *
 * - MongoDB: `--auth`; the first user is created through the localhost exception.
 * - FerretDB v1 (SQLite): authentication exists only with `--test-enable-new-auth`; the
 *   setup user is created on first start of an empty data directory, its password passed
 *   in the environment (a flag would show in `ps`). SQLite runs with WAL and
 *   synchronous=FULL so an acknowledged write is on disk (FerretDB ignores writeConcern),
 *   and secure_delete=ON so an erased record's bytes are overwritten with zeros in its
 *   pages, freed pages included, not left in free space (the WAL's older copies are
 *   purged after each erase: db/sqlite-wal-purge.ts). FerretDB passes every `_pragma` of
 *   the URL to each SQLite connection it opens.
 *   Its debug HTTP listener is off and telemetry disabled: nothing listens or calls out.
 */
export function engineCommand(cfg: DbConfig, password: string): EngineCommand {
  if (cfg.engine === 'mongodb') {
    const dbPath = join(cfg.dataDir, 'mongodb');
    return {
      command: cfg.mongodBinary,
      args: ['--dbpath', dbPath, '--bind_ip', '127.0.0.1', '--port', String(cfg.port), '--auth', '--quiet', '--nounixsocket', '--setParameter', 'diagnosticDataCollectionEnabled=false'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
      dirs: [dbPath],
    };
  }
  const sqliteDir = ferretdbSqliteDir(cfg);
  const stateDir = join(cfg.dataDir, 'ferretdb-state');
  return {
    command: cfg.ferretdbBinary,
    args: [
      '--handler=sqlite',
      `--sqlite-url=file:${sqliteDir}/?_pragma=synchronous(FULL)&_pragma=secure_delete(ON)`,
      `--listen-addr=127.0.0.1:${cfg.port}`,
      `--state-dir=${stateDir}`,
      '--debug-addr=-',
      '--telemetry=disable',
      '--log-format=json',
      // Errors only: at WARN it logs whole error responses.
      '--log-level=error',
      '--test-enable-new-auth',
      '--setup-database=admin',
      `--setup-username=${DB_USER}`,
    ],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DO_NOT_TRACK: '1', FERRETDB_SETUP_PASSWORD: password },
    dirs: [sqliteDir, stateDir],
  };
}

function ferretdbSqliteDir(cfg: DbConfig): string {
  return join(cfg.dataDir, 'ferretdb');
}

/** The SQLite file FerretDB keeps the service's database in (one file per database, `<name>.sqlite`). */
export function ferretdbSqliteFile(cfg: DbConfig): string {
  return join(ferretdbSqliteDir(cfg), `${DB_NAME}.sqlite`);
}

export function mongoUri(port: number): string {
  return `mongodb://127.0.0.1:${port}/?authSource=admin&directConnection=true`;
}
