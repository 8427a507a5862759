import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Binary } from 'mongodb';
import { ApiError } from '../../../../services/common/errors/api-error';
import { ferretdbSqliteFile } from '../../../../services/core/db/engine';
import { SqliteWalPurge } from '../../../../services/core/db/sqlite-wal-purge';
import { Deadline } from '../../../../services/core/storage/deadline';
import { LIST_PAGE_MAX_BYTES, RecordStore, type NewRecord, type RecordPage } from '../../../../services/core/storage/records';
import { startScratchDatabase, type TestDatabase, testDataKeys } from '../../../support/core-fixtures';
import { silentLogger } from '../../../support/logger';

const dataKeys = testDataKeys();

function recordDoc(collection: string, data: Record<string, unknown>): NewRecord {
  return { _id: randomUUID(), collection, client: 'app-1', tokenId: '0123456789abcdef', data };
}

/** Every regular file under `dir`, read now. */
function filesUnder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out.set(join(entry.parentPath, entry.name), readFileSync(join(entry.parentPath, entry.name)));
  }
  return out;
}

/** The files holding any of the needles. */
function holding(files: Map<string, Buffer>, needles: Buffer[]): string[] {
  return [...files].filter(([, bytes]) => needles.some((n) => bytes.includes(n))).map(([name]) => name);
}

function badCursor(err: unknown): boolean {
  return err instanceof ApiError && err.code === 'bad_cursor' && err.status === 400;
}

describe('core RecordStore: list and erase on FerretDB', function () {
  this.timeout(60_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let store: RecordStore;
  let purge: SqliteWalPurge;
  // Collections of their own per test, so each sees only its records.
  let n = 0;
  const freshCollection = (): string => `c${++n}_${randomUUID().slice(0, 8)}`;

  before(async () => {
    database = await startScratchDatabase();
    purge = new SqliteWalPurge(ferretdbSqliteFile(database.cfg), silentLogger());
    store = new RecordStore(database.db, dataKeys, purge);
    await store.init();
  });

  after(async () => {
    purge?.stop();
    await database?.cleanup();
  });

  /** Every page from the start, following nextCursor. */
  async function allPages(collection: string, query: { limit?: number; createdFrom?: string; createdTo?: string } = {}): Promise<RecordPage[]> {
    const pages: RecordPage[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list(collection, { ...query, ...(cursor ? { cursor } : {}) });
      pages.push(page);
      cursor = page.nextCursor ?? undefined;
    } while (cursor && pages.length < 1000);
    return pages;
  }

  it('pages through a collection in (createdAt, id) order, each record once, none of another collection, ending with a null cursor', async () => {
    const collection = freshCollection();
    const base = Date.UTC(2026, 0, 1);
    const stored: { id: string; at: number; i: number }[] = [];
    // Three records share each millisecond, so the id decides their order within it.
    for (let i = 0; i < 23; i++) {
      const doc = recordDoc(collection, { i });
      await store.insert(doc, { now: new Date(base + Math.floor(i / 3)) });
      stored.push({ id: doc._id, at: base + Math.floor(i / 3), i });
    }
    await store.insert(recordDoc(freshCollection(), { other: true }), { now: new Date(base) });
    const pages = await allPages(collection, { limit: 5 });
    assert.deepEqual(pages.map((p) => p.records.length), [5, 5, 5, 5, 3]);
    assert.equal(pages.at(-1)!.nextCursor, null);
    const listed = pages.flatMap((p) => p.records);
    const expected = [...stored].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
    assert.deepEqual(listed.map((r) => r.id), expected.map((r) => r.id));
    assert.ok(listed.every((r) => r.collection === collection && 'data' in r));
    assert.deepEqual(listed[0], { id: expected[0]!.id, collection, data: { i: expected[0]!.i }, createdAt: new Date(base).toISOString() });
    // The default page is 20.
    assert.equal((await store.list(collection, {})).records.length, 20);
  });

  it('lists records stored while paging after the pages already returned, never twice, and every earlier record once', async () => {
    const collection = freshCollection();
    const t0 = Date.UTC(2026, 1, 1);
    const before: string[] = [];
    for (let i = 0; i < 10; i++) {
      const doc = recordDoc(collection, { i });
      await store.insert(doc, { now: new Date(t0 + i) });
      before.push(doc._id);
    }
    const seen: string[] = [];
    let page = await store.list(collection, { limit: 3 });
    seen.push(...page.records.map((r) => r.id));
    let later = 0;
    while (page.nextCursor) {
      // A write lands between every two pages, stored after everything before it.
      await store.insert(recordDoc(collection, { later: later++ }), { now: new Date(t0 + 100 + later) });
      page = await store.list(collection, { limit: 3, cursor: page.nextCursor });
      seen.push(...page.records.map((r) => r.id));
    }
    assert.equal(new Set(seen).size, seen.length, 'a record was listed twice');
    assert.deepEqual(seen.slice(0, 10), before);
    assert.equal(seen.length, 10 + later, 'the records stored while paging were listed once each');
  });

  it('filters by createdFrom (inclusive) and createdTo (exclusive), and binds the cursor to them', async () => {
    const collection = freshCollection();
    const t = (s: number): Date => new Date(Date.UTC(2026, 2, 1, 12, 0, s));
    const ids: string[] = [];
    for (let s = 0; s < 6; s++) {
      const doc = recordDoc(collection, { s });
      await store.insert(doc, { now: t(s) });
      ids.push(doc._id);
    }
    const range = { createdFrom: '2026-03-01T12:00:01Z', createdTo: '2026-03-01T13:00:04+01:00' };
    const pages = await allPages(collection, { ...range, limit: 2 });
    assert.deepEqual(pages.flatMap((p) => p.records.map((r) => r.id)), ids.slice(1, 4));
    assert.deepEqual((await store.list(collection, { createdFrom: '2026-03-01T12:00:05Z' })).records.map((r) => r.id), [ids[5]]);
    assert.deepEqual((await store.list(collection, { createdTo: '2026-03-01T12:00:00.001Z' })).records.map((r) => r.id), [ids[0]]);
    assert.deepEqual((await store.list(collection, { createdFrom: '2026-03-01T12:00:00.0001Z', createdTo: '2026-03-01T12:00:01Z' })).records, []);

    const cursor = pages[0]!.nextCursor!;
    assert.equal((await store.list(collection, { ...range, limit: 2, cursor })).records.length, 1);
    // The same cursor with other filters, or none, or in another collection: refused.
    await assert.rejects(store.list(collection, { createdFrom: range.createdFrom, cursor }), badCursor);
    await assert.rejects(store.list(collection, { cursor }), badCursor);
    await assert.rejects(store.list(collection, { ...range, createdTo: '2026-03-01T12:00:05Z', cursor }), badCursor);
    await assert.rejects(store.list(freshCollection(), { ...range, cursor }), badCursor);
  });

  it('refuses a cursor that decodes to an operator or was altered, changing nothing', async () => {
    const collection = freshCollection();
    for (let i = 0; i < 3; i++) await store.insert(recordDoc(collection, { i }));
    const first = await store.list(collection, { limit: 1 });
    const forged = [Buffer.from('{"$gt":""}').toString('base64url'), `${first.nextCursor!.slice(0, -2)}AA`, first.nextCursor!.slice(1)];
    for (const cursor of forged) await assert.rejects(store.list(collection, { cursor }), badCursor, cursor);
    // Positive control: the real cursor gives the next record.
    assert.equal((await store.list(collection, { limit: 1, cursor: first.nextCursor! })).records.length, 1);
  });

  it('ends a page past LIST_PAGE_MAX_BYTES of JSON, always with at least one record', async () => {
    const collection = freshCollection();
    const big = 'x'.repeat(60_000);
    // 40 records of ~60 kB: 100 of them would be ~6 MB; a page holds about 17.
    for (let i = 0; i < 40; i++) await store.insert(recordDoc(collection, { i, a: big, b: big.slice(0, 0) }));
    const pages = await allPages(collection, { limit: 100 });
    assert.ok(pages.length >= 3, `${pages.length} pages`);
    for (const p of pages) {
      const bytes = Buffer.byteLength(JSON.stringify(p.records));
      assert.ok(bytes <= LIST_PAGE_MAX_BYTES + 1024, `a page of ${bytes} bytes`);
      assert.ok(p.records.length >= 1);
    }
    assert.equal(pages.flatMap((p) => p.records).length, 40);
    // One record larger than the page bound is still listed, alone.
    const huge = freshCollection();
    await store.insert(recordDoc(huge, { a: 'y'.repeat(LIST_PAGE_MAX_BYTES) }));
    await store.insert(recordDoc(huge, { a: 'small' }));
    const hugePages = await allPages(huge, { limit: 100 });
    assert.deepEqual(hugePages.map((p) => p.records.length), [1, 1]);
  });

  it('lists a record that fails to decrypt as record_unreadable without its content, and the others in full', async () => {
    const collection = freshCollection();
    const docs = [recordDoc(collection, { i: 0 }), recordDoc(collection, { i: 1 }), recordDoc(collection, { i: 2 })];
    for (const [i, d] of docs.entries()) await store.insert(d, { now: new Date(Date.UTC(2026, 3, 1, 0, 0, i)) });
    // Another record's ciphertext spliced in: authentication fails for this id.
    const records = database.db.collection<{ _id: string; enc: { ciphertext: Binary } }>('records');
    const donor = await records.findOne({ _id: docs[2]!._id });
    await records.updateOne({ _id: docs[1]!._id }, { $set: { 'enc.ciphertext': donor!.enc.ciphertext } });
    const page = await store.list(collection, {});
    assert.deepEqual(page.records, [
      { id: docs[0]!._id, collection, data: { i: 0 }, createdAt: '2026-04-01T00:00:00.000Z' },
      { id: docs[1]!._id, collection, createdAt: '2026-04-01T00:00:01.000Z', error: 'record_unreadable' },
      { id: docs[2]!._id, collection, data: { i: 2 }, createdAt: '2026-04-01T00:00:02.000Z' },
    ]);
  });

  it('erases a record of its collection once, answers the same for a repeat, and leaves another collection\'s record with that id untouched', async () => {
    const collection = freshCollection();
    const doc = recordDoc(collection, { title: 'to erase' });
    await store.insert(doc);
    assert.ok(await store.get(collection, doc._id));
    assert.equal(await store.erase(freshCollection(), doc._id), false, 'erased through another collection');
    assert.ok(await store.get(collection, doc._id), 'another collection erased the record');
    assert.equal(await store.erase(collection, doc._id), true);
    assert.equal(await store.get(collection, doc._id), undefined);
    assert.deepEqual((await store.list(collection, {})).records, []);
    assert.equal(await store.erase(collection, doc._id), false);
    assert.equal(await store.erase(collection, randomUUID()), false);
  });

  it("leaves no copy of an erased record's id or ciphertext in any database file, where the same search finds them before the erase and finds a record not erased after it", async () => {
    const collection = freshCollection();
    // Enough records around it that pages split and get rewritten after the insert.
    for (let i = 0; i < 200; i++) await store.insert(recordDoc(collection, { filler: i, pad: 'p'.repeat(500) }));
    const victim = recordDoc(collection, { title: 'erase me', pad: 'v'.repeat(3000) });
    const keeper = recordDoc(collection, { title: 'keep me', pad: 'k'.repeat(3000) });
    await store.insert(victim);
    await store.insert(keeper);
    for (let i = 0; i < 200; i++) await store.insert(recordDoc(collection, { filler: i, pad: 'q'.repeat(500) }));
    // Checkpointed once, so the record is in the database file as well as in the WAL's history.
    await purge.purge();
    for (let i = 0; i < 20; i++) await store.insert(recordDoc(collection, { filler: i }));

    const records = database.db.collection<{ _id: string; enc: { ciphertext: Binary } }>('records');
    // The id, and the ciphertext as FerretDB's JSON holds it (base64) in 32-character pieces:
    // a record past a page's room continues on overflow pages, splitting the text.
    const needles = async (id: string): Promise<Buffer[]> => {
      const b64 = Buffer.from((await records.findOne({ _id: id }))!.enc.ciphertext.buffer).toString('base64');
      const pieces: Buffer[] = [];
      for (let at = 0; at + 32 <= b64.length; at += 256) pieces.push(Buffer.from(b64.slice(at, at + 32)));
      return [Buffer.from(id), ...pieces];
    };
    const victimNeedles = await needles(victim._id);
    const keeperNeedles = await needles(keeper._id);
    const dir = join(database.dataDir, 'ferretdb');
    const before = filesUnder(dir);
    assert.notDeepEqual(holding(before, [victimNeedles[0]!]), [], 'positive control: the id is not found before the erase');
    assert.notDeepEqual(holding(before, victimNeedles.slice(1)), [], 'positive control: the ciphertext is not found before the erase');

    assert.equal(await store.erase(collection, victim._id), true);
    const after = filesUnder(dir);
    assert.deepEqual(holding(after, [victimNeedles[0]!]), [], 'the erased id is still in the files');
    assert.deepEqual(holding(after, victimNeedles.slice(1)), [], 'the erased ciphertext is still in the files');
    assert.equal(statSync(`${ferretdbSqliteFile(database.cfg)}-wal`).size, 0, 'the WAL was not truncated');
    // Positive control after: the record not erased is found by the same search, in the same copy.
    assert.notDeepEqual(holding(after, [keeperNeedles[0]!]), [], 'the kept id is not found after the erase');
    assert.notDeepEqual(holding(after, keeperNeedles.slice(1)), [], 'the kept ciphertext is not found after the erase');
    assert.ok(await store.get(collection, keeper._id));
    assert.equal(purge.pending, false);
  });

  it('answers an erase whose purge a reader holds up 504 deadline_exceeded, keeps purging, and answers a repeated DELETE once the WAL is empty', async () => {
    const collection = freshCollection();
    const doc = recordDoc(collection, { title: 'held up' });
    await store.insert(doc);
    // A read transaction on a snapshot that still needs the WAL: no TRUNCATE checkpoint can finish under it.
    const reader = new DatabaseSync(ferretdbSqliteFile(database.cfg), { timeout: 1000 });
    try {
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM sqlite_master').get();
      await assert.rejects(store.erase(collection, doc._id, { deadline: new Deadline(300) }), (err: unknown) => err instanceof ApiError && err.code === 'deadline_exceeded' && err.status === 504);
      assert.equal(await store.get(collection, doc._id), undefined, 'the record is readable after its erase');
      assert.equal(purge.pending, true);
      assert.ok(statSync(`${ferretdbSqliteFile(database.cfg)}-wal`).size > 0);
      // While the reader stays, a repeated DELETE waits for the same purge and runs out of time too.
      await assert.rejects(store.erase(collection, doc._id, { deadline: new Deadline(200) }), (err: unknown) => err instanceof ApiError && err.code === 'deadline_exceeded');
    } finally {
      reader.exec('COMMIT');
      reader.close();
    }
    assert.equal(await store.erase(collection, doc._id, { deadline: new Deadline(10_000) }), false);
    assert.equal(purge.pending, false);
    assert.equal(statSync(`${ferretdbSqliteFile(database.cfg)}-wal`).size, 0);
  });
});
