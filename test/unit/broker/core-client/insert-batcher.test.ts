import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import type { CoreCall, CoreResponse } from '../../../../services/broker/core-client/client';
import { InsertBatcher } from '../../../../services/broker/core-client/insert-batcher';
import { ApiError } from '../../../../services/common/errors/api-error';
import { RECORD_BATCH_MAX_BYTES, type RecordBatchItem, type RecordBatchResult } from '../../../../services/common/http/record-batch';

/** A stand-in for core: records what it was sent; each call waits until the test settles it. */
class FakeCore {
  /** Statuses the next batch answers for these ids instead of 201. */
  readonly batchStatus = new Map<string, number>();
  readonly calls: { kind: 'single' | 'batch'; ids: string[]; deadline: number; settle: (ok: boolean) => void }[] = [];

  insert(call: CoreCall, _record: Record<string, unknown>): Promise<CoreResponse> {
    return new Promise((resolve, reject) => {
      this.calls.push({ kind: 'single', ids: [call.requestId], deadline: call.deadline, settle: (ok) => (ok ? resolve({ status: 201, body: { id: call.requestId } }) : reject(new ApiError('outcomeUnknown', 'lost'))) });
    });
  }

  insertBatch(items: readonly RecordBatchItem[], deadline: number): Promise<RecordBatchResult[]> {
    return new Promise((resolve, reject) => {
      this.calls.push({ kind: 'batch', ids: items.map((i) => i.requestId), deadline, settle: (ok) => (ok ? resolve(items.map((i) => ({ status: this.batchStatus.get(i.requestId) ?? 201, body: { id: i.requestId } }))) : reject(new ApiError('outcomeUnknown', 'lost'))) });
    });
  }

  shape(): string[] {
    return this.calls.map((c) => `${c.kind}:${c.ids.join(',')}`);
  }
}

function call(id: string, deadlineInMs = 5000): CoreCall {
  return { requestId: id, collection: 'notes', token: 'nst_0123456789abcdef_token', deadline: performance.now() + deadlineInMs };
}

describe('InsertBatcher (group commit)', () => {
  let core: FakeCore;
  let sizes: number[];
  const batcher = (maxRecords = 32, maxInFlight = 1): InsertBatcher => new InsertBatcher(core, { maxRecords, maxInFlight }, { observe: (n) => sizes.push(n) });

  beforeEach(() => {
    core = new FakeCore();
    sizes = [];
  });

  it('sends a lone insert at once, on its own, through the single insert', async () => {
    const b = batcher();
    const reply = b.insert(call('a'), { x: 1 });
    await tick();
    assert.deepEqual(core.shape(), ['single:a']);
    core.calls[0]!.settle(true);
    assert.deepEqual(await reply, { status: 201, body: { id: 'a' } });
    assert.deepEqual(sizes, [1]);
  });

  it('sends the inserts of one event-loop turn together, and what arrives while that batch is with core as the next batch', async () => {
    const b = batcher();
    const first = ['a', 'b', 'c'].map((id) => b.insert(call(id), { id }));
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c']);
    const later = ['d', 'e'].map((id) => b.insert(call(id), { id }));
    await tick();
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c'], 'nothing more is sent while the only batch allowed is with core');
    core.calls[0]!.settle(true);
    assert.deepEqual(
      (await Promise.all(first)).map((r) => r.body),
      [{ id: 'a' }, { id: 'b' }, { id: 'c' }],
    );
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c', 'batch:d,e']);
    core.calls[1]!.settle(true);
    assert.deepEqual(
      (await Promise.all(later)).map((r) => r.body),
      [{ id: 'd' }, { id: 'e' }],
    );
    assert.deepEqual(sizes, [3, 2]);
  });

  it('keeps maxInFlight batches with core at once', async () => {
    const b = batcher(32, 2);
    void b.insert(call('a'), {});
    await tick();
    void b.insert(call('b'), {});
    await tick();
    void b.insert(call('c'), {});
    void b.insert(call('d'), {});
    await tick();
    assert.deepEqual(core.shape(), ['single:a', 'single:b']);
    core.calls[0]!.settle(true);
    await tick();
    await tick();
    assert.deepEqual(core.shape(), ['single:a', 'single:b', 'batch:c,d']);
  });

  it('closes a batch at maxRecords and at the byte limit, and sends a record larger than the limit on its own', async () => {
    const b = batcher(3);
    for (const id of ['a', 'b', 'c', 'd']) void b.insert(call(id), {});
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c']);
    core.calls[0]!.settle(true);
    await tick();
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c', 'single:d']);

    core = new FakeCore();
    const big = { s: 'x'.repeat(RECORD_BATCH_MAX_BYTES / 5) };
    const c = batcher(32);
    for (const id of ['p', 'q', 'r']) void c.insert(call(id), big);
    void c.insert(call('huge'), { s: 'x'.repeat(RECORD_BATCH_MAX_BYTES) });
    void c.insert(call('s'), {});
    await tick();
    // Each big record counts twice its size (its body may double once escaped): two fit.
    assert.deepEqual(core.shape(), ['batch:p,q']);
    for (let i = 0; i < 3; i++) {
      core.calls[i]!.settle(true);
      await tick();
      await tick();
    }
    assert.deepEqual(core.shape(), ['batch:p,q', 'single:r', 'single:huge', 'single:s']);
  });

  it("gives a failed batch's error to every record of it, and the latest of their deadlines to the batch", async () => {
    const b = batcher();
    const replies = [b.insert(call('a', 1000), {}), b.insert(call('b', 9000), {})].map((p) => p.then(() => 'ok', (e: ApiError) => e.code));
    await tick();
    assert.ok(core.calls[0]!.deadline > performance.now() + 5000, 'the batch has the later deadline');
    core.calls[0]!.settle(false);
    assert.deepEqual(await Promise.all(replies), ['outcome_unknown', 'outcome_unknown']);
  });

  it('answers deadline_exceeded, as its gateway does at that instant, without sending it, a record whose budget ran out while it waited', async () => {
    const b = batcher();
    void b.insert(call('a'), {});
    await tick();
    const expired = b.insert(call('b', 1), {}).then(() => 'ok', (e: ApiError) => `${e.code}`);
    const fresh = b.insert(call('c'), {});
    await new Promise((r) => setTimeout(r, 10));
    core.calls[0]!.settle(true);
    assert.equal(await expired, 'deadline_exceeded');
    await tick();
    assert.deepEqual(core.shape(), ['single:a', 'single:c']);
    core.calls[1]!.settle(true);
    assert.equal((await fresh).status, 201);
  });

  it('sends every insert on its own when maxRecords is 1', async () => {
    const b = batcher(1, 1);
    for (const id of ['a', 'b', 'c']) void b.insert(call(id), {});
    await tick();
    assert.deepEqual(core.shape(), ['single:a', 'single:b', 'single:c']);
  });

  it('sends again on its own, with the single insert, a record core answered 503 (not stored) inside a batch; other answers stand', async () => {
    const b = batcher();
    core.batchStatus.set('b', 503);
    core.batchStatus.set('c', 409);
    const replies = ['a', 'b', 'c'].map((id) => b.insert(call(id), {}));
    await tick();
    core.calls[0]!.settle(true);
    await tick();
    assert.deepEqual(core.shape(), ['batch:a,b,c', 'single:b']);
    core.calls[1]!.settle(true);
    assert.deepEqual(
      (await Promise.all(replies)).map((r) => r.status),
      [201, 201, 409],
    );
  });
});
