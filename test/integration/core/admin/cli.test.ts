import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { ApiError } from '../../../../services/common/errors/api-error';
import { TokenGeneration, tokenGenerationPath } from '../../../../services/core/auth/token-generation';
import { TokenStore } from '../../../../services/core/auth/tokens';
import { runAdminCli as runCli, type AdminRun as Run } from '../../../support/admin-cli';
import { startScratchDatabase, type TestDatabase } from '../../../support/core-fixtures';
import { tempDir } from '../../../support/tmp';

describe('nonstop-admin token commands against FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let env: Record<string, string>;
  let tokens: TokenStore;
  let runDir: { dir: string; cleanup: () => void };

  before(async () => {
    database = await startScratchDatabase();
    // RUN_DIR with the generation file in it, as the service leaves it at start.
    runDir = tempDir('nonstop-run-');
    new TokenGeneration(tokenGenerationPath(runDir.dir)).create();
    env = { DB_ENGINE: 'ferretdb', DB_PORT: String(database.cfg.port), DATA_DIR: database.dataDir, RUN_DIR: runDir.dir };
    tokens = new TokenStore(database.db);
  });

  after(async () => {
    await database?.cleanup();
    runDir?.cleanup();
  });

  const tokenCount = (): Promise<number> => database.db.collection('tokens').countDocuments({});

  async function create(...extra: string[]): Promise<{ token: string; id: string; run: Run }> {
    const run = await runCli(['token', 'create', '--collections', 'notes,orders', '--scopes', 'read,write', ...extra], env);
    assert.equal(run.code, 0, run.stderr);
    const token = run.stdout.replace(/\n$/, '');
    return { token, id: token.slice(4, 20), run };
  }

  it('prints only the new token on stdout and its id on stderr', async () => {
    const { token, id, run } = await create();
    assert.match(run.stdout, /^nst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n$/);
    assert.equal(run.stdout.split('\n').length, 2);
    assert.ok(run.stderr.includes(id), run.stderr);
    assert.ok(!run.stderr.includes(token));
  });

  it('creates a token that authorizes its collections and scopes, and nothing else', async () => {
    const { token, id } = await create();
    assert.equal((await tokens.authorize(token, 'notes', 'write')).id, id);
    assert.deepEqual((await tokens.authorize(token, 'orders', 'read')).collections, ['notes', 'orders']);
    await assert.rejects(tokens.authorize(token, 'other', 'read'), (err: unknown) => err instanceof ApiError && err.status === 403);
  });

  it('records --label and --expires-in', async () => {
    const { id } = await create('--expires-in', '1h', '--label', 'nightly job');
    const doc = await database.db.collection('tokens').findOne({ _id: id as never });
    assert.equal(doc?.label, 'nightly job');
    const ahead = (doc?.expiresAt as Date).getTime() - Date.now();
    assert.ok(ahead > 0 && ahead <= 3_600_000, String(ahead));
  });

  it('creates a token for the client named with --client, and one without it is its own client', async () => {
    const { token, id, run } = await create('--client', 'billing-app');
    assert.ok(run.stderr.includes('billing-app'), run.stderr);
    assert.equal((await tokens.authorize(token, 'notes', 'write')).client, 'billing-app');
    assert.equal((await database.db.collection('tokens').findOne({ _id: id as never }))?.client, 'billing-app');
    const unnamed = await create();
    assert.equal((await tokens.authorize(unnamed.token, 'notes', 'write')).client, unnamed.id);
  });

  it('exits 2 creating nothing for a malformed --client or a flag it does not know', async () => {
    const before = await tokenCount();
    for (const args of [['--client', 'has space'], ['--client', '0123456789abcdef'], ['--clinet', 'billing-app']]) {
      const run = await runCli(['token', 'create', '--collections', 'notes', '--scopes', 'read', ...args], env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stdout, '');
    }
    assert.equal(await tokenCount(), before);
  });

  it('rotates a token: prints only the new token, which has the same client, collections, scopes and label, and the old one stays valid', async () => {
    const old = await create('--client', 'rotating-app', '--label', 'nightly');
    const run = await runCli(['token', 'rotate', old.id], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^nst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\n$/);
    const token = run.stdout.trim();
    const id = token.slice(4, 20);
    assert.notEqual(id, old.id);
    assert.ok(run.stderr.includes(id) && run.stderr.includes(old.id), run.stderr);
    assert.ok(!run.stderr.includes(token));
    assert.deepEqual(await tokens.authorize(token, 'orders', 'write'), { id, client: 'rotating-app', collections: ['notes', 'orders'], scopes: ['read', 'write'] });
    assert.equal((await database.db.collection('tokens').findOne({ _id: id as never }))?.label, 'nightly');
    assert.equal((await tokens.authorize(old.token, 'notes', 'read')).client, 'rotating-app');
  });

  it('rotates with --revoke-old: the new token works and the old one is refused', async () => {
    const old = await create('--client', 'switching-app');
    const run = await runCli(['token', 'rotate', old.id, '--revoke-old'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stderr.includes(`revoked ${old.id}`), run.stderr);
    assert.equal((await tokens.authorize(run.stdout.trim(), 'notes', 'write')).client, 'switching-app');
    await assert.rejects(tokens.authorize(old.token, 'notes', 'read'), (err: unknown) => err instanceof ApiError && err.status === 401);
  });

  it('exits 1 creating nothing when rotating an unknown or revoked token, and 2 without an id', async () => {
    const revoked = await create();
    assert.equal((await runCli(['token', 'revoke', revoked.id], env)).code, 0);
    const before = await tokenCount();
    for (const id of ['0000000000000000', revoked.id]) {
      const run = await runCli(['token', 'rotate', id], env);
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stdout, '');
    }
    for (const args of [['token', 'rotate'], ['token', 'rotate', '--revoke-old'], ['token', 'rotate', revoked.id, '--label', 'x']]) {
      const run = await runCli(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.ok(run.stderr.includes('usage:'), run.stderr);
    }
    assert.equal(await tokenCount(), before);
  });

  it('lists tokens as JSON lines without hashes or tokens', async () => {
    const { token, id } = await create('--label', 'listed');
    const run = await runCli(['token', 'list'], env);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, await tokenCount());
    const mine = lines.find((t) => t._id === id);
    assert.deepEqual(mine?.collections, ['notes', 'orders']);
    assert.equal(mine?.label, 'listed');
    for (const line of lines) {
      assert.ok(!('hash' in line), JSON.stringify(line));
      assert.ok(!('token' in line), JSON.stringify(line));
    }
    assert.ok(!run.stdout.includes(token.slice(21)));
    assert.ok(!/[0-9a-f]{64}/.test(run.stdout), 'no SHA-256 hex in the listing');
  });

  it('revokes a token once: exit 0, then exit 1 for the same id', async () => {
    const { token, id } = await create();
    const first = await runCli(['token', 'revoke', id], env);
    assert.equal(first.code, 0, first.stderr);
    assert.ok(first.stderr.includes(id));
    await assert.rejects(tokens.authorize(token, 'notes', 'read'), (err: unknown) => err instanceof ApiError && err.status === 401);
    const second = await runCli(['token', 'revoke', id], env);
    assert.equal(second.code, 1);
    assert.ok(second.stderr.includes(id));
  });

  it('tells the service of a revocation by one more byte in RUN_DIR/token-generation, and of nothing else', async () => {
    const file = tokenGenerationPath(runDir.dir);
    const length = (): number => readFileSync(file).length;
    const before = length();
    const { id } = await create();
    assert.equal(length(), before, 'creating a token takes nothing away: no signal');
    assert.equal((await runCli(['token', 'revoke', id], env)).code, 0);
    assert.equal(length(), before + 1);
    assert.equal((await runCli(['token', 'revoke', id], env)).code, 1);
    assert.equal(length(), before + 1, 'nothing revoked: no signal');
    const old = await create();
    assert.equal((await runCli(['token', 'rotate', old.id], env)).code, 0);
    assert.equal(length(), before + 1, 'a rotation that keeps the old token: no signal');
    assert.equal((await runCli(['token', 'rotate', old.id, '--revoke-old'], env)).code, 0);
    assert.equal(length(), before + 2);
  });

  it('exits 3 when no service shares its RUN_DIR: the revocation is stored, and the message says the service was not told', async () => {
    const elsewhere = tempDir('nonstop-run-elsewhere-');
    try {
      const { token, id } = await create();
      const run = await runCli(['token', 'revoke', id], { ...env, RUN_DIR: elsewhere.dir });
      assert.equal(run.code, 3, run.stderr);
      assert.ok(run.stderr.includes('not told') && run.stderr.includes(tokenGenerationPath(elsewhere.dir)), run.stderr);
      assert.equal(existsSync(tokenGenerationPath(elsewhere.dir)), false, 'the tool must not create the file no service reads');
      await assert.rejects(tokens.authorize(token, 'notes', 'read'), (err: unknown) => err instanceof ApiError && err.status === 401);
      // Positive control: the same command with the service's RUN_DIR exits 0.
      const other = await create();
      assert.equal((await runCli(['token', 'revoke', other.id], env)).code, 0);
    } finally {
      elsewhere.cleanup();
    }
  });

  it('exits 1 when revoking an id that does not exist', async () => {
    const run = await runCli(['token', 'revoke', '0000000000000000'], env);
    assert.equal(run.code, 1);
  });

  it('exits 2 with the usage on stderr for bad command lines, creating nothing', async () => {
    const before = await tokenCount();
    for (const args of [
      ['token', 'create', '--scopes', 'admin'],
      ['token', 'create', '--collections'],
      ['token', 'create', 'notes'],
      ['token', 'create', '--collections', 'notes', '--expires-in', 'soon'],
      ['token', 'revoke'],
      ['token', 'revoke', 'a', 'b'],
      ['token', 'frobnicate'],
      ['token'],
      [],
    ]) {
      const run = await runCli(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.ok(run.stderr.includes('usage:'), `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stdout, '');
    }
    const scopes = await runCli(['token', 'create', '--scopes', 'admin'], env);
    assert.ok(scopes.stderr.includes('unknown scope'), scopes.stderr);
    assert.equal(await tokenCount(), before);
  });

  it('exits 2 without a token for an invalid collection name', async () => {
    const before = await tokenCount();
    const run = await runCli(['token', 'create', '--collections', 'no$tes', '--scopes', 'read'], env);
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stdout, '');
    assert.equal(await tokenCount(), before);
  });

  it('exits 2 naming the variable when the configuration is wrong', async () => {
    const run = await runCli(['token', 'list'], { ...env, DB_PORT: 'not-a-port' });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /DB_PORT/);
    assert.equal(run.stdout, '');
  });
});
