import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { CoreClient } from '../../../services/broker/core-client/client';
import { InsertBatcher } from '../../../services/broker/core-client/insert-batcher';
import { brokerMetrics } from '../../../services/broker/metrics';
import { createCorePki, startCoreServer, startScratchDatabase, type CorePki, type CoreServer, type TestDatabase } from '../../support/core-fixtures';

/**
 * The broker's group commit against real core on FerretDB, wired as services/broker/main.ts
 * wires it: the real CoreClient over mTLS, the batch-size histogram the broker serves.
 */
describe('InsertBatcher against core on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  let token = '';
  let client: CoreClient;
  let registry: Registry;
  let metrics: ReturnType<typeof brokerMetrics>;

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    core = await startCoreServer({ pki, db: database.db });
    token = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
  });

  beforeEach(() => {
    registry = new Registry();
    metrics = brokerMetrics(registry);
    client = new CoreClient(
      { url: `https://127.0.0.1:${core.port}`, ca: pki.ca.certPem, cert: pki.broker.certPem, key: pki.broker.keyPem, serverName: 'localhost', timeoutMs: 10_000, maxInFlight: 4, retries: 3 },
      metrics.coreRetries,
    );
  });

  afterEach(() => client.close());

  after(async () => {
    await core?.close();
    await database?.cleanup();
  });

  /** The histogram's sample count and sum, as the broker's /metrics shows them. */
  async function batchMetric(): Promise<{ count: number; sum: number }> {
    const text = await registry.metrics();
    const value = (name: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      assert.ok(line, `${name} is not in the metrics text`);
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    return { count: value('nonstop_broker_core_batch_records_count'), sum: value('nonstop_broker_core_batch_records_sum') };
  }

  it('stores 64 concurrent inserts in two batches of 32, each caller answered 201 for its own record', async () => {
    const batcher = new InsertBatcher(client, { maxRecords: 32, maxInFlight: 2 }, metrics.coreBatchRecords);
    const ids = Array.from({ length: 64 }, () => randomUUID());
    const replies = await Promise.all(ids.map((id, i) => batcher.insert({ requestId: id, collection: 'notes', token, deadline: performance.now() + 10_000 }, { i })));
    assert.deepEqual(
      replies,
      ids.map((id) => ({ status: 201, body: { id } })),
    );
    assert.deepEqual(await batchMetric(), { count: 2, sum: 64 });
    assert.equal(await database.db.collection('records').countDocuments({ _id: { $in: ids as never[] } }), 64);
    for (const [i, id] of ids.entries()) assert.deepEqual((await core.records.get('notes', id))?.data, { i });
  });

  it("keeps each record's own answer inside a batch: a refused token and a retry of one record both in it", async () => {
    const batcher = new InsertBatcher(client, { maxRecords: 32, maxInFlight: 1 }, metrics.coreBatchRecords);
    const id = randomUUID();
    const deadline = performance.now() + 10_000;
    const replies = await Promise.all([
      batcher.insert({ requestId: id, collection: 'notes', token, deadline }, { same: 1 }),
      batcher.insert({ requestId: id, collection: 'notes', token, deadline }, { same: 1 }),
      batcher.insert({ requestId: randomUUID(), collection: 'notes', token: `nst_0123456789abcdef_${'A'.repeat(43)}`, deadline }, { x: 1 }),
    ]);
    assert.deepEqual(
      replies.map((r) => r.status),
      [201, 201, 401],
    );
    assert.deepEqual(await batchMetric(), { count: 1, sum: 3 });
    assert.equal(await database.db.collection('records').countDocuments({ _id: id as never }), 1);
  });
});
