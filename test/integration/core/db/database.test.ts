import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MongoClient, MongoServerError } from 'mongodb';
import { connectClient, passwordFile } from '../../../../services/core/db/database';
import { DB_NAME, mongoUri } from '../../../../services/core/db/engine';
import { startScratchDatabase, startTestDatabase, type TestDatabase } from '../../../support/core-fixtures';

interface Listener {
  proto: string;
  address: string;
  port: number;
}

/** The socket inodes a process holds open. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // the fd closed meanwhile
    }
  }
  return inodes;
}

function decodeAddress(hex: string): string {
  if (hex.length === 8) return Buffer.from(hex, 'hex').reverse().join('.');
  // IPv6: four little-endian 32-bit words.
  const words = hex.match(/.{8}/g)!.map((w) => Buffer.from(w, 'hex').reverse().toString('hex'));
  return words.join('').match(/.{4}/g)!.join(':');
}

/** TCP listeners and bound UDP sockets of a process, from /proc/net. */
function socketsOf(pid: number): { tcpListeners: Listener[]; udp: Listener[] } {
  const mine = socketInodes(pid);
  const read = (proto: string, onlyState?: string): Listener[] => {
    const out: Listener[] = [];
    for (const line of readFileSync(`/proc/net/${proto}`, 'utf8').trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [addr, port] = f[1]!.split(':') as [string, string];
      if ((onlyState === undefined || f[3] === onlyState) && mine.has(f[9]!)) out.push({ proto, address: decodeAddress(addr), port: parseInt(port, 16) });
    }
    return out;
  };
  return { tcpListeners: [...read('tcp', '0A'), ...read('tcp6', '0A')], udp: [...read('udp'), ...read('udp6')] };
}

describe('core database process (FerretDB)', function () {
  this.timeout(30_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let restarted: TestDatabase | undefined;

  before(async () => {
    database = await startScratchDatabase();
  });

  after(async () => {
    await restarted?.stop();
    await database?.cleanup();
  });

  it('listens on its loopback port only: no wildcard address, no debug listener, no UDP', () => {
    const pid = database.child.pid!;
    const { tcpListeners, udp } = socketsOf(pid);
    assert.deepEqual(tcpListeners, [{ proto: 'tcp', address: '127.0.0.1', port: database.cfg.port }]);
    assert.ok(!tcpListeners.some((l) => l.port === 8088));
    assert.deepEqual(udp, []);
  });

  it('keeps the database password off its command line', () => {
    const password = readFileSync(passwordFile(database.cfg), 'utf8').trim();
    const cmdline = readFileSync(`/proc/${database.child.pid!}/cmdline`, 'utf8');
    assert.ok(cmdline.includes('--test-enable-new-auth'), 'reads the real command line');
    assert.ok(!cmdline.includes(password));
  });

  it('answers ping without credentials but refuses data commands with code 13', async () => {
    const bare = new MongoClient(mongoUri(database.cfg.port), { serverSelectionTimeoutMS: 3000 });
    try {
      assert.equal((await bare.db('admin').command({ ping: 1 })).ok, 1);
      const coll = bare.db(DB_NAME).collection('records');
      await assert.rejects(coll.insertOne({ probe: 1 }), (err: unknown) => err instanceof MongoServerError && err.code === 13);
      await assert.rejects(coll.find({}).toArray(), (err: unknown) => err instanceof MongoServerError && err.code === 13);
      await assert.rejects(bare.db('admin').collection('system.users').find({}).toArray(), (err: unknown) => err instanceof MongoServerError && err.code === 13);
    } finally {
      await bare.close();
    }
    assert.equal(await database.db.collection('records').countDocuments({ probe: 1 }), 0);
  });

  it('refuses a login with the wrong password', async () => {
    const wrong = connectClient(database.cfg, 'not-the-password');
    try {
      await assert.rejects(wrong.connect(), (err: unknown) => err instanceof MongoServerError && err.code === 18);
    } finally {
      await wrong.close();
    }
  });

  it('keeps the generated password in DATA_DIR/credentials, readable by its owner only', () => {
    const file = passwordFile(database.cfg);
    assert.equal(file, join(database.dataDir, 'credentials', 'db.password'));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(database.dataDir, 'credentials')).mode & 0o077, 0);
    assert.match(readFileSync(file, 'utf8').trim(), /^[A-Za-z0-9_-]{43}$/);
    for (const dir of ['ferretdb', 'ferretdb-state']) assert.equal(statSync(join(database.dataDir, dir)).mode & 0o077, 0, dir);
  });

  it('reuses the password and logs in again when started a second time on the same data dir', async () => {
    await database.db.collection('records').insertOne({ _id: 'before-restart' as never, n: 1 });
    const password = readFileSync(passwordFile(database.cfg), 'utf8');
    const port = database.cfg.port;
    await database.stop();
    const again = (restarted = await startTestDatabase(database.dataDir, { port }));
    assert.equal(readFileSync(passwordFile(again.cfg), 'utf8'), password);
    assert.equal((await again.db.collection('records').findOne({ _id: 'before-restart' as never }))?.n, 1);
    await again.db.collection('records').insertOne({ _id: 'after-restart' as never, n: 2 });
    assert.equal(await again.db.collection('records').countDocuments({}), 2);
  });
});
