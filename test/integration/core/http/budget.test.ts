import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { TokenStore, type Scope, type TokenGrant } from '../../../../services/core/auth/tokens';
import type { Deadline } from '../../../../services/core/storage/deadline';
import { coreRequest, createCorePki, errorCode, startCoreServer, startScratchDatabase, type CorePki, type CoreResponse, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';
import { stopProcess } from '../../../support/process-stop';
import { waitFor } from '../../../support/wait';

/**
 * Core's request budget (x-request-budget-ms) against a real FerretDB that is stalled with
 * SIGSTOP: the database process still holds its sockets, so the driver can connect and
 * write but never gets an answer, which is what an overloaded or hung engine looks like.
 */

/** A TokenStore that can stall the database right after a lookup succeeded, so the insert that follows is sent to a stalled engine. */
class StallingTokenStore extends TokenStore {
  stallAfterNextAuthorize: (() => Promise<void>) | undefined;

  override async authorize(token: string, collection: string, scope: Scope, opts: { deadline?: Deadline; now?: Date } = {}): Promise<TokenGrant> {
    const grant = await super.authorize(token, collection, scope, opts);
    const stall = this.stallAfterNextAuthorize;
    this.stallAfterNextAuthorize = undefined;
    await stall?.();
    return grant;
  }
}

// Core's own default, far above every budget the tests send: a request that ends near its
// header's budget cannot have been ended by the default.
const DEFAULT_BUDGET_MS = 60_000;

describe('core request budgets against a stalled FerretDB', function () {
  this.timeout(90_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  let tokens: StallingTokenStore;
  let token = '';
  let stalled = false;

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    tokens = new StallingTokenStore(database.db);
    core = await startCoreServer({ pki, db: database.db, tokens, defaultBudgetMs: DEFAULT_BUDGET_MS });
    token = (await tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
  });

  function dbPid(): number {
    const pid = database.child.pid;
    assert.ok(pid !== undefined && database.child.running, 'FerretDB is not running');
    return pid;
  }

  async function stall(): Promise<void> {
    stalled = true;
    await stopProcess(dbPid());
  }

  function resume(): void {
    if (!stalled) return;
    process.kill(dbPid(), 'SIGCONT');
    stalled = false;
  }

  afterEach(() => {
    tokens.stallAfterNextAuthorize = undefined;
    resume();
  });

  after(async () => {
    resume();
    await core?.close();
    await database?.cleanup();
  });

  const count = (id: string): Promise<number> => database.db.collection('records').countDocuments({ _id: id as never });

  function post(opts: { requestId?: string; budget?: string; body?: string; timeoutMs?: number }): Promise<CoreResponse> {
    return coreRequest({
      port: core.port,
      method: 'POST',
      path: '/v1/records/notes',
      headers: {
        'content-type': 'application/json',
        'x-request-id': opts.requestId ?? randomUUID(),
        authorization: `Bearer ${token}`,
        ...(opts.budget !== undefined ? { 'x-request-budget-ms': opts.budget } : {}),
      },
      body: opts.body ?? '{"title":"budget"}',
      ca: pki.ca.certPem,
      client: pki.broker,
      // Longer than any budget sent here, shorter than core's default.
      timeoutMs: opts.timeoutMs ?? 30_000,
    });
  }

  /** A fresh write answered 201: the database is back and serving. */
  async function servingAgain(): Promise<void> {
    await waitFor('a fresh write after the database resumed', async () => (await post({ budget: '5000' })).status === 201);
  }

  function assertDeadline(res: CoreResponse): void {
    assert.equal(res.status, 504, res.text);
    assert.equal(errorCode(res), 'deadline_exceeded');
    assert.equal((res.json as { error: { stored: string } }).error.stored, 'unknown');
  }

  it('refuses a malformed x-request-budget-ms with 400 bad_request, storing nothing, and accepts 1 to 600000', async () => {
    for (const budget of ['0', '600001', '-1', '1.5', 'abc', '1e3', '', '100, 200']) {
      const id = randomUUID();
      const res = await post({ requestId: id, budget });
      assert.equal(res.status, 400, `${JSON.stringify(budget)}: ${res.text}`);
      assert.equal(errorCode(res), 'bad_request');
      assert.equal(await count(id), 0);
    }
    for (const budget of ['600000', '5000']) {
      const id = randomUUID();
      const res = await post({ requestId: id, budget });
      assert.equal(res.status, 201, `${budget}: ${res.text}`);
      assert.equal(await count(id), 1);
    }
    // One millisecond is a valid budget (too short to store anything, but not a bad request).
    assert.notEqual((await post({ budget: '1' })).status, 400);
  });

  it('answers a write to a stalled database with 504 deadline_exceeded after its budget, not the default, and never stores it later', async () => {
    const id = randomUUID();
    await stall();
    const started = performance.now();
    const res = await post({ requestId: id, budget: '300' });
    const tookMs = performance.now() - started;
    // Answered while the database was still stalled: only the budget can have ended it.
    assert.equal(stalled, true);
    assertDeadline(res);
    assert.ok(tookMs >= 300, `answered after ${tookMs} ms, before its budget`);
    resume();
    await servingAgain();
    // The lookup of its token never came back, so its insert was never sent.
    assert.equal(await count(id), 0);
    // Positive control from the same place: the same request now stores, once.
    const retry = await post({ requestId: id, budget: '5000' });
    assert.equal(retry.status, 201, retry.text);
    assert.equal(await count(id), 1);
  });

  it('gives up on an insert sent to a database that stalled after the token lookup; the engine commits it on resuming, which is why the answer says stored unknown', async () => {
    const id = randomUUID();
    tokens.stallAfterNextAuthorize = stall;
    const res = await post({ requestId: id, budget: '1000' });
    assert.equal(stalled, true, 'the stall hook did not run');
    assertDeadline(res);
    resume();
    // Observed with FerretDB 1.24: the insert was written to its socket before the stall
    // ended, and it executes it on resuming although core closed that connection. A 504
    // can therefore never say "not stored", and the retry must converge on this record.
    await waitFor('the insert sent before the budget ran out to be committed', async () => (await count(id)) === 1, 20_000);
    const retry = await post({ requestId: id, budget: '5000' });
    assert.equal(retry.status, 201, retry.text);
    assert.deepEqual(retry.json, { id });
    assert.equal(await count(id), 1);
  });

  it('ends every one of many requests queued behind a stalled database within its budget, storing none of them', async () => {
    const n = 120;
    const ids = Array.from({ length: n }, () => randomUUID());
    await stall();
    const answers = await Promise.all(
      ids.map(async (requestId) => {
        const started = performance.now();
        const res = await post({ requestId, budget: '500' });
        return { res, tookMs: performance.now() - started };
      }),
    );
    assert.equal(stalled, true);
    for (const { res, tookMs } of answers) {
      assertDeadline(res);
      assert.ok(tookMs >= 500, `answered after ${tookMs} ms, before its budget`);
    }
    const slowest = Math.max(...answers.map((a) => a.tookMs));
    process.stdout.write(`      ${n} requests with a 500 ms budget behind a stalled database: all 504, slowest after ${Math.round(slowest)} ms\n`);
    resume();
    await servingAgain();
    assert.equal(await database.db.collection('records').countDocuments({ _id: { $in: ids as never[] } }), 0);
  });
});
