import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { countRecordsTitled, queryCore } from '../../support/stack/core-db';
import { waitFor } from '../../support/wait';

describe('core through the whole chain', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
  });

  after(async () => {
    await stack?.down();
  });

  const ready = async (token: string) =>
    waitFor('the chain', async () => {
      const res = await api.post('notes', { title: 'probe' }, token);
      return res.status === 201 ? res : undefined;
    }, 60_000, 250);

  it('refuses revoked, expired, wrong-collection and wrong-scope tokens with 401/403 and stores nothing', async () => {
    const good = await createToken(stack, ['notes']);
    await ready(good);
    const expiring = await createToken(stack, ['notes'], 'read,write', ['--expires-in', '1s']);
    const revoked = await createToken(stack, ['notes']);
    const list = await stack.exec('core', ['nonstop-admin', 'token', 'list']);
    const revokedId = /^nst_([0-9a-f]{16})_/.exec(revoked)![1]!;
    assert.ok(list.stdout.includes(revokedId));
    assert.equal((await stack.exec('core', ['nonstop-admin', 'token', 'revoke', revokedId])).exitCode, 0);
    const otherCollection = await createToken(stack, ['orders']);
    const readOnly = await createToken(stack, ['notes'], 'read');
    await sleep(1500);
    const cases: [string, string, number][] = [
      ['revoked', revoked, 401],
      ['expired', expiring, 401],
      ['for another collection', otherCollection, 403],
      ['read-only, writing', readOnly, 403],
      ['made up', `nst_${'0'.repeat(16)}_${'A'.repeat(43)}`, 401],
    ];
    for (const [what, token, status] of cases) {
      const res = await api.post('notes', { title: `written with a ${what} token` }, token);
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.equal((res.json as { error: { code: string } }).error.code, status === 401 ? 'unauthenticated' : 'forbidden');
    }
    assert.equal(await countRecordsTitled(stack, /^written with/), 0);
  });

  // Killing the container leaves the page cache to the kernel, so this cannot tell a synced
  // write from an unsynced one (test/integration/core/db/durability.test.ts cuts the power
  // for that): it checks the engine runs with its sync settings, and that nothing
  // acknowledged is lost when core dies in the middle of writes.
  it('keeps every acknowledged record when the core container is killed during writes, its engine syncing each commit', async () => {
    const token = await createToken(stack, ['notes']);
    await ready(token);
    await assertEngineSyncsEachCommit(stack);

    const acked = new Map<string, string>();
    let halted = false;
    const failures: string[] = [];
    const writer = async (k: number): Promise<void> => {
      for (let i = 0; !halted; i++) {
        const title = `acknowledged ${k}/${i}`;
        try {
          const res = await api.post('notes', { title }, token);
          if (res.status === 201) acked.set((res.json as { id: string }).id, title);
          else if (!halted) failures.push(`${res.status} ${res.text}`);
        } catch (err) {
          if (!halted) failures.push((err as Error).message);
        }
      }
    };
    const writers = Array.from({ length: 6 }, (_, k) => writer(k));
    await waitFor('100 acknowledged writes', () => {
      assert.deepEqual(failures, []);
      return acked.size >= 100;
    }, 120_000, 50);
    // Each writer has a request in flight: the kill lands in the middle of them.
    halted = true;
    await stack.container('core').kill({ signal: 'SIGKILL' });
    await stack.container('core').start();
    await stack.waitHealthy('core');
    // Requests in flight at the kill end one way or the other (a broker retry may even
    // store one in the restarted core); whatever was acknowledged counts.
    await Promise.all(writers);
    assert.deepEqual(failures, []);

    await waitFor('the chain after the restart', async () => (await api.get('notes', [...acked.keys()][0]!, token)).status === 200, 60_000, 500);
    const stored = await queryCore<[string, string][]>(stack, `records.find({ _id: { $in: ${JSON.stringify([...acked.keys()])} } }).toArray().then((d) => d.map((r) => [r._id, plain(r).title]))`);
    const found = new Map(stored);
    const lost = [...acked.keys()].filter((id) => !found.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${acked.size} acknowledged records lost`);
    for (const [id, title] of acked) assert.equal(found.get(id), title);
  });
});

/**
 * The database engine's sync settings as the running process has them (its command line
 * in /proc inside the core container), not as the code that starts it says: FerretDB's
 * SQLite with synchronous=FULL and journal_mode WAL (FerretDB's default, so no override;
 * confirmed in the database file's header), or mongod with its journal on.
 */
async function assertEngineSyncsEachCommit(stack: Stack): Promise<void> {
  const res = await stack.exec('core', ['node', '-e', `
    const fs = require('fs');
    const found = [];
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
      let argv;
      try { argv = fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').split('\\0').filter(Boolean); } catch { continue; }
      if (/(^|\\/)(ferretdb|mongod)$/.test(argv[0] || '')) found.push(argv);
    }
    const header = Buffer.alloc(100);
    let walHeader = null;
    try {
      const fd = fs.openSync('/var/lib/nonstop/data/ferretdb/nonstop.sqlite', 'r');
      fs.readSync(fd, header, 0, 100, 0);
      walHeader = [header[18], header[19]];
    } catch {}
    process.stdout.write(JSON.stringify({ found, walHeader }));
  `]);
  assert.equal(res.exitCode, 0, res.stderr);
  const { found, walHeader } = JSON.parse(res.stdout) as { found: string[][]; walHeader: [number, number] | null };
  assert.equal(found.length, 1, `expected one database engine process in core, found ${JSON.stringify(found)}`);
  const argv = found[0]!;
  if (argv[0]!.endsWith('mongod')) {
    assert.ok(!argv.includes('--nojournal'), `mongod runs without its journal: ${argv.join(' ')}`);
    return;
  }
  const urlArg = argv.find((a) => a.startsWith('--sqlite-url='));
  assert.ok(urlArg, `FerretDB runs without --sqlite-url: ${argv.join(' ')}`);
  const pragmas = new URL(urlArg.slice('--sqlite-url='.length)).searchParams.getAll('_pragma');
  assert.ok(pragmas.includes('synchronous(FULL)'), `FerretDB's SQLite runs with ${JSON.stringify(pragmas)}, not synchronous(FULL)`);
  assert.deepEqual(pragmas.filter((p) => p.startsWith('journal_mode')), [], 'journal_mode overridden (FerretDB defaults to WAL)');
  // SQLite file format: bytes 18 and 19 are 2 for a database in WAL mode.
  assert.deepEqual(walHeader, [2, 2], 'the records database is not in WAL mode');
}
