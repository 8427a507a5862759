import assert from 'node:assert/strict';
import type { DbConfig } from '../../../../services/core/config';
import { DB_USER, engineCommand, ferretdbSqliteFile, mongoUri } from '../../../../services/core/db/engine';

const PASSWORD = 'Zx9-very-secret-db-password';

function config(engine: DbConfig['engine']): DbConfig {
  return { engine, port: 27123, dataDir: '/var/lib/nonstop/data', mongodBinary: '/usr/bin/mongod', ferretdbBinary: '/usr/local/bin/ferretdb', startTimeoutMs: 60_000 };
}

describe('engineCommand for FerretDB', () => {
  const cmd = engineCommand(config('ferretdb'), PASSWORD);

  it('runs the configured binary', () => {
    assert.equal(cmd.command, '/usr/local/bin/ferretdb');
  });

  it('listens on loopback only, on the configured port', () => {
    assert.ok(cmd.args.includes('--listen-addr=127.0.0.1:27123'));
    assert.equal(cmd.args.filter((a) => a.startsWith('--listen')).length, 1);
  });

  it('turns off the debug listener and telemetry', () => {
    assert.ok(cmd.args.includes('--debug-addr=-'));
    assert.ok(cmd.args.includes('--telemetry=disable'));
    assert.equal(cmd.env.DO_NOT_TRACK, '1');
  });

  it('turns authentication on and creates the setup user', () => {
    assert.ok(cmd.args.includes('--test-enable-new-auth'));
    assert.ok(cmd.args.includes(`--setup-username=${DB_USER}`));
    assert.ok(cmd.args.includes('--setup-database=admin'));
  });

  it('passes the password in the environment only, never on the command line', () => {
    assert.equal(cmd.env.FERRETDB_SETUP_PASSWORD, PASSWORD);
    for (const a of cmd.args) assert.ok(!a.includes(PASSWORD), a);
    assert.ok(!cmd.args.some((a) => a.startsWith('--setup-password')));
  });

  it('stores data in SQLite under DATA_DIR with synchronous=FULL and secure_delete=ON, in nonstop.sqlite', () => {
    const url = cmd.args.find((a) => a.startsWith('--sqlite-url='));
    assert.equal(url, '--sqlite-url=file:/var/lib/nonstop/data/ferretdb/?_pragma=synchronous(FULL)&_pragma=secure_delete(ON)');
    assert.ok(cmd.args.includes('--handler=sqlite'));
    assert.ok(cmd.args.includes('--state-dir=/var/lib/nonstop/data/ferretdb-state'));
    // The file the erase purge checkpoints: FerretDB names it after the database.
    assert.equal(ferretdbSqliteFile(config('ferretdb')), '/var/lib/nonstop/data/ferretdb/nonstop.sqlite');
    assert.deepEqual(cmd.dirs, ['/var/lib/nonstop/data/ferretdb', '/var/lib/nonstop/data/ferretdb-state']);
  });

  it('does not hand the parent environment down', () => {
    assert.deepEqual(Object.keys(cmd.env).sort(), ['DO_NOT_TRACK', 'FERRETDB_SETUP_PASSWORD', 'PATH']);
  });
});

describe('engineCommand for MongoDB', () => {
  const cmd = engineCommand(config('mongodb'), PASSWORD);

  it('runs mongod with authentication on', () => {
    assert.equal(cmd.command, '/usr/bin/mongod');
    assert.ok(cmd.args.includes('--auth'));
  });

  it('binds to 127.0.0.1 only, on the configured port, without a unix socket', () => {
    const at = cmd.args.indexOf('--bind_ip');
    assert.equal(cmd.args[at + 1], '127.0.0.1');
    assert.ok(!cmd.args.includes('--bind_ip_all'));
    assert.equal(cmd.args[cmd.args.indexOf('--port') + 1], '27123');
    assert.ok(cmd.args.includes('--nounixsocket'));
  });

  it('keeps data under DATA_DIR', () => {
    assert.equal(cmd.args[cmd.args.indexOf('--dbpath') + 1], '/var/lib/nonstop/data/mongodb');
    assert.deepEqual(cmd.dirs, ['/var/lib/nonstop/data/mongodb']);
  });

  it('puts the password neither in the arguments nor in the environment', () => {
    for (const a of cmd.args) assert.ok(!a.includes(PASSWORD), a);
    for (const v of Object.values(cmd.env)) assert.ok(!String(v).includes(PASSWORD));
  });
});

describe('mongoUri', () => {
  it('points at loopback with admin as the auth source and no credentials', () => {
    assert.equal(mongoUri(27123), 'mongodb://127.0.0.1:27123/?authSource=admin&directConnection=true');
  });
});
