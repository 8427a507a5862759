import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandStartedEvent, Db, MongoClient } from 'mongodb';
import { ApiError } from '../../../../services/common/errors/api-error';
import { hashToken } from '../../../../services/core/auth/token-format';
import { TokenGeneration, tokenGenerationPath } from '../../../../services/core/auth/token-generation';
import { TokenStore, type TokenStoreOptions } from '../../../../services/core/auth/tokens';
import { connectClient, ensureDbPassword } from '../../../../services/core/db/database';
import { DB_NAME } from '../../../../services/core/db/engine';
import { runAdminCli } from '../../../support/admin-cli';
import { coreRequest, createCorePki, errorCode, startCoreServer, startScratchDatabase, type CorePki, type CoreResponse, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';
import { tempDir } from '../../../support/tmp';

/**
 * Core's token grant cache against a real FerretDB, the real core HTTPS app and the real
 * nonstop-admin process: the cache saves the token's database read, and a change made with
 * nonstop-admin holds from the very next request. Database reads are counted with the
 * driver's command monitoring (every `find` on the tokens collection).
 */
describe('core token grant cache on FerretDB', function () {
  this.timeout(60_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let monitored: MongoClient;
  let db: Db;
  let pki: CorePki;
  let runDir: { dir: string; cleanup: () => void };
  let adminEnv: Record<string, string>;
  let tokenFinds = 0;
  /** Runs once, as the next token find is sent. */
  let onNextTokenFind: (() => void) | undefined;
  const servers: CoreServer[] = [];

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    monitored = connectClient(database.cfg, ensureDbPassword(database.cfg), { monitorCommands: true });
    monitored.on('commandStarted', (ev: CommandStartedEvent) => {
      if (ev.commandName !== 'find' || (ev.command as { find?: unknown }).find !== 'tokens') return;
      tokenFinds++;
      const hook = onNextTokenFind;
      onNextTokenFind = undefined;
      hook?.();
    });
    await monitored.connect();
    db = monitored.db(DB_NAME);
    runDir = tempDir('nonstop-run-');
    adminEnv = { DB_ENGINE: 'ferretdb', DB_PORT: String(database.cfg.port), DATA_DIR: database.dataDir, RUN_DIR: runDir.dir };
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  after(async () => {
    await monitored?.close();
    await database?.cleanup();
    runDir?.cleanup();
  });

  /** The service's token store as core/main.ts makes it: the generation file created at start. */
  function serviceStore(opts: Omit<TokenStoreOptions, 'generation'> = {}): TokenStore {
    const generation = new TokenGeneration(tokenGenerationPath(runDir.dir));
    generation.create();
    return new TokenStore(db, { ...opts, generation });
  }

  async function serve(tokens: TokenStore): Promise<CoreServer> {
    const core = await startCoreServer({ pki, db, tokens });
    servers.push(core);
    return core;
  }

  /** What `fn` returned, and the token finds made while it ran. */
  async function withFinds<T>(fn: () => Promise<T>): Promise<{ value: T; finds: number }> {
    const before = tokenFinds;
    const value = await fn();
    return { value, finds: tokenFinds - before };
  }

  async function findsDuring(fn: () => Promise<unknown>): Promise<number> {
    return (await withFinds(fn)).finds;
  }

  function post(core: CoreServer, token: string, collection = 'notes'): Promise<CoreResponse> {
    return coreRequest({
      port: core.port,
      method: 'POST',
      path: `/v1/records/${collection}`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': randomUUID() },
      body: JSON.stringify({ title: 'cached' }),
      ca: pki.ca.certPem,
      client: pki.broker,
    });
  }

  function get(core: CoreServer, token: string, id: string): Promise<CoreResponse> {
    return coreRequest({ port: core.port, path: `/v1/records/notes/${id}`, headers: { authorization: `Bearer ${token}` }, ca: pki.ca.certPem, client: pki.broker });
  }

  async function adminCreate(...extra: string[]): Promise<{ token: string; id: string }> {
    const run = await runAdminCli(['token', 'create', '--collections', 'notes', '--scopes', 'read,write', ...extra], adminEnv);
    assert.equal(run.code, 0, run.stderr);
    const token = run.stdout.trim();
    return { token, id: token.slice(4, 20) };
  }

  it('reads a token from the database once for N requests, where the uncached store reads it N times', async () => {
    const N = 20;
    const { token } = await adminCreate();
    for (const [label, tokens, expected] of [
      ['uncached', new TokenStore(db), N],
      ['cached', serviceStore(), 1],
    ] as const) {
      const core = await serve(tokens);
      const stored = await post(core, token);
      assert.equal(stored.status, 201, stored.text);
      const id = (stored.json as { id: string }).id;
      const finds = await findsDuring(async () => {
        for (let i = 0; i < N - 1; i++) assert.equal((await get(core, token, id)).status, 200);
      });
      // The POST's read plus the GETs': N in all without the cache, the POST's alone with it.
      assert.equal(finds + 1, expected, `${label}: ${finds + 1} token reads for ${N} requests`);
    }
  });

  it('refuses a cached token with 401 on the very next request after nonstop-admin token revoke returns', async () => {
    const core = await serve(serviceStore());
    const { token, id } = await adminCreate();
    const stored = await post(core, token);
    assert.equal(stored.status, 201, stored.text);
    const recordId = (stored.json as { id: string }).id;
    // Served from the cache: without the generation check the next answer would be 200 too.
    assert.equal(await findsDuring(async () => assert.equal((await get(core, token, recordId)).status, 200)), 0);
    const revoke = await runAdminCli(['token', 'revoke', id], adminEnv);
    assert.equal(revoke.code, 0, revoke.stderr);
    const { value: res, finds } = await withFinds(() => get(core, token, recordId));
    assert.equal(res.status, 401, res.text);
    assert.equal(errorCode(res), 'unauthenticated');
    assert.equal(finds, 1, 'the revocation emptied the cache: the token was read again');
    // Positive control: a token the revocation did not name still works.
    const other = await adminCreate();
    assert.equal((await post(core, other.token)).status, 201);
  });

  it('after nonstop-admin token rotate --revoke-old, refuses the cached old token and accepts the new one on the next requests', async () => {
    const core = await serve(serviceStore());
    const old = await adminCreate('--client', 'rotating-app');
    assert.equal((await post(core, old.token)).status, 201);
    assert.equal(await findsDuring(async () => assert.equal((await post(core, old.token)).status, 201)), 0);
    // A rotation that keeps the old token leaves it valid, and cached.
    const kept = await runAdminCli(['token', 'rotate', old.id], adminEnv);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal(await findsDuring(async () => assert.equal((await post(core, old.token)).status, 201)), 0);
    const run = await runAdminCli(['token', 'rotate', old.id, '--revoke-old'], adminEnv);
    assert.equal(run.code, 0, run.stderr);
    const refused = await post(core, old.token);
    assert.equal(refused.status, 401, refused.text);
    const next = await post(core, run.stdout.trim());
    assert.equal(next.status, 201, next.text);
  });

  it('stops accepting a cached token at its expiry instant, from the cache', async () => {
    const tokens = serviceStore();
    const expiresAt = new Date(Date.now() + 3_600_000);
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'], expiresAt });
    const justBefore = new Date(expiresAt.getTime() - 1);
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read', { now: justBefore })), 1);
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read', { now: justBefore })), 0);
    const finds = await findsDuring(() => assert.rejects(tokens.authorize(token, 'notes', 'read', { now: expiresAt }), (err: unknown) => err instanceof ApiError && err.status === 401));
    assert.equal(finds, 0, 'refused from the cached document');
    // The same cached document, a millisecond earlier: still accepted.
    assert.equal((await tokens.authorize(token, 'notes', 'read', { now: justBefore })).scopes[0], 'read');
  });

  it('refuses a cached token over HTTPS once its expiry has passed', async () => {
    const tokens = serviceStore();
    const core = await serve(tokens);
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read', 'write'], expiresAt: new Date(Date.now() + 1500) });
    assert.equal((await post(core, token)).status, 201);
    await sleep(1600);
    const { value: res, finds } = await withFinds(() => post(core, token));
    assert.equal(res.status, 401, res.text);
    assert.equal(finds, 0, 'refused from the cached document');
  });

  it('compares the secret of a cached token on every request: a wrong one is refused without a database read', async () => {
    const tokens = serviceStore();
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    await tokens.authorize(token, 'notes', 'read');
    const wrong = `${token.slice(0, 21)}${randomBytes(32).toString('base64url')}`;
    const finds = await findsDuring(() => assert.rejects(tokens.authorize(wrong, 'notes', 'read'), (err: unknown) => err instanceof ApiError && err.status === 401));
    assert.equal(finds, 0);
    assert.equal((await tokens.authorize(token, 'notes', 'read')).scopes[0], 'read');
  });

  it('never remembers an unknown token: one created after it was refused is accepted with no signal', async () => {
    const tokens = serviceStore();
    const id = randomBytes(8).toString('hex');
    const token = `nst_${id}_${randomBytes(32).toString('base64url')}`;
    for (let i = 0; i < 2; i++) {
      const finds = await findsDuring(() => assert.rejects(tokens.authorize(token, 'notes', 'write'), (err: unknown) => err instanceof ApiError && err.status === 401));
      assert.equal(finds, 1, 'each refusal of an unknown id is read from the database');
    }
    // Stored as TokenStore.create stores it, by another process: no generation change.
    await database.db.collection('tokens').insertOne({ _id: id as never, hash: hashToken(token), client: id, collections: ['notes'], scopes: ['write'], createdAt: new Date() });
    assert.equal((await tokens.authorize(token, 'notes', 'write')).id, id);
  });

  it('does not keep a token read while a change was being signalled: the next request reads it again', async () => {
    const tokens = serviceStore();
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    // nonstop-admin's signal lands after the read was sent and before its answer is used.
    onNextTokenFind = () => new TokenGeneration(tokenGenerationPath(runDir.dir)).bump();
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read')), 1);
    assert.equal(onNextTokenFind, undefined, 'the signal was sent during the read');
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read')), 1);
    // Positive control: with no change in flight, what was read is kept.
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read')), 0);
  });

  it('holds at most maxEntries tokens, the least recently used read again', async () => {
    const created = await Promise.all([0, 1, 2].map(() => new TokenStore(db).create({ collections: ['notes'], scopes: ['read'] })));
    const [a, b, c] = created.map((t) => t.token) as [string, string, string];
    const sequence = async (tokens: TokenStore): Promise<number> =>
      findsDuring(async () => {
        for (const t of [a, b, c, c, b, a]) await tokens.authorize(t, 'notes', 'read');
      });
    // Room for two: "a" was the least recently used when "c" came in, so it is read again.
    assert.equal(await sequence(serviceStore({ cache: { maxEntries: 2, maxAgeMs: 60_000 } })), 4);
    // Positive control: room for three reads each once.
    assert.equal(await sequence(serviceStore({ cache: { maxEntries: 3, maxAgeMs: 60_000 } })), 3);
  });

  it('reads a token again after maxAgeMs, so a change made behind nonstop-admin\'s back holds within that age', async () => {
    const tokens = serviceStore({ cache: { maxEntries: 100, maxAgeMs: 500 } });
    const { id, token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    await tokens.authorize(token, 'notes', 'read');
    await database.db.collection('tokens').updateOne({ _id: id as never }, { $set: { revokedAt: new Date() } });
    // Positive control: within its age the entry is what answers (this is the window).
    assert.equal(await findsDuring(() => tokens.authorize(token, 'notes', 'read')), 0);
    await sleep(600);
    const finds = await findsDuring(() => assert.rejects(tokens.authorize(token, 'notes', 'read'), (err: unknown) => err instanceof ApiError && err.status === 401));
    assert.equal(finds, 1);
  });
});
