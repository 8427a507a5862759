import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Binary, type Collection } from 'mongodb';
import type { RecordDoc } from '../../../../services/core/storage/records';
import {
  coreRequest,
  createCorePki,
  errorCode,
  startCoreServer,
  startScratchDatabase,
  type CorePki,
  type CoreResponse,
  type CoreServer,
  type TestDatabase,
} from '../../../support/core-fixtures';

type Scratch = TestDatabase & { dataDir: string; cleanup: () => Promise<void> };

/** Every regular file under `dir` (the database's whole data volume) that holds `needle`'s bytes. */
function filesHolding(dir: string, needle: string): string[] {
  const bytes = Buffer.from(needle, 'utf8');
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && readFileSync(p).includes(bytes)) found.push(p.slice(dir.length + 1));
    }
  };
  walk(dir);
  return found;
}

/** Every regular file under `dir`, for the report of a failed search. */
function allFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile());
}

describe('records at rest: core stores their content encrypted (FerretDB)', function () {
  this.timeout(60_000);
  let database: Scratch;
  let pki: CorePki;
  let core: CoreServer;
  let token: string;
  let records: Collection<RecordDoc>;

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    core = await startCoreServer({ pki, db: database.db });
    token = (await core.tokens.create({ collections: ['notes', 'orders'], scopes: ['read', 'write'] })).token;
    records = database.db.collection<RecordDoc>('records');
  });

  after(async () => {
    await core?.close();
    await database?.cleanup();
  });

  function post(body: string, opts: { collection?: string; requestId?: string } = {}): Promise<CoreResponse> {
    return coreRequest({
      port: core.port,
      method: 'POST',
      path: `/v1/records/${opts.collection ?? 'notes'}`,
      headers: { 'content-type': 'application/json', 'x-request-id': opts.requestId ?? randomUUID(), authorization: `Bearer ${token}` },
      body,
      ca: pki.ca.certPem,
      client: pki.broker,
    });
  }

  function get(id: string, collection = 'notes'): Promise<CoreResponse> {
    return coreRequest({ port: core.port, path: `/v1/records/${collection}/${id}`, headers: { authorization: `Bearer ${token}` }, ca: pki.ca.certPem, client: pki.broker });
  }

  async function stored(body: Record<string, unknown>, collection = 'notes'): Promise<string> {
    const res = await post(JSON.stringify(body), { collection });
    assert.equal(res.status, 201, res.text);
    return (res.json as { id: string }).id;
  }

  /** The answer must be a 500-class record_unreadable error: no data in it, whatever it holds. */
  function assertUnreadable(res: CoreResponse): void {
    assert.equal(res.status, 500, res.text);
    assert.equal(errorCode(res), 'record_unreadable', res.text);
    assert.equal((res.json as { data?: unknown }).data, undefined);
  }

  it('reads back through the API what was written, while the document holds only ciphertext, a wrapped key and a key id', async () => {
    const body = { title: 'round trip', n: 42, nested: { list: [1, 'two', null, true] }, text: 'é ✓ 𝄞' };
    const id = await stored(body);
    const res = await get(id);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((res.json as { data: unknown }).data, body);
    const doc = await records.findOne({ _id: id });
    assert.ok(doc?.enc, 'no enc field');
    assert.deepEqual(Object.keys(doc).sort(), ['_id', 'client', 'collection', 'createdAt', 'enc', 'tokenId']);
    assert.deepEqual(Object.keys(doc.enc).sort(), ['ciphertext', 'keyId', 'nonce', 'tag', 'v', 'wrappedKey']);
    assert.equal(doc.enc.nonce.buffer.length, 12);
    assert.equal(doc.enc.tag.buffer.length, 16);
    assert.equal(doc.enc.wrappedKey.buffer.length, 60);
    assert.ok(!Buffer.from(doc.enc.ciphertext.buffer).toString('latin1').includes('round trip'));
  });

  it('answers a replay of a stored record as the same record, and other content under its id as a conflict, by decrypting it', async () => {
    const requestId = randomUUID();
    assert.equal((await post('{"a":1,"b":[2,3]}', { requestId })).status, 201);
    const replay = await post('{"b":[2,3],"a":1}', { requestId });
    assert.equal(replay.status, 201, replay.text);
    assert.deepEqual(replay.json, { id: requestId });
    const other = await post('{"a":2,"b":[2,3]}', { requestId });
    assert.equal(other.status, 409, other.text);
    assert.equal(errorCode(other), 'conflict');
    assert.equal(await records.countDocuments({ _id: requestId }), 1);
  });

  it('refuses to read a record whose ciphertext, tag, nonce or wrapped key had one bit flipped: 500 record_unreadable, never data', async () => {
    for (const field of ['ciphertext', 'tag', 'nonce', 'wrappedKey'] as const) {
      const id = await stored({ title: `tamper ${field}` });
      assert.equal((await get(id)).status, 200, 'positive control: it reads before the flip');
      const doc = (await records.findOne({ _id: id }))!;
      const bytes = Buffer.from(doc.enc![field].buffer);
      bytes[bytes.length >> 1]! ^= 0x01;
      await records.updateOne({ _id: id }, { $set: { [`enc.${field}`]: new Binary(bytes) } });
      assertUnreadable(await get(id));
    }
  });

  it('refuses to read either of two records whose encrypted contents were swapped, or one moved to another collection', async () => {
    const a = await stored({ owner: 'alice', balance: 10 });
    const b = await stored({ owner: 'bob', balance: 99_999 });
    const [docA, docB] = [(await records.findOne({ _id: a }))!, (await records.findOne({ _id: b }))!];
    await records.updateOne({ _id: a }, { $set: { enc: docB.enc! } });
    await records.updateOne({ _id: b }, { $set: { enc: docA.enc! } });
    assertUnreadable(await get(a));
    assertUnreadable(await get(b));

    // Same id and ciphertext, another collection: the binding includes the collection.
    const c = await stored({ owner: 'carol' });
    await records.updateOne({ _id: c }, { $set: { collection: 'orders' } });
    assertUnreadable(await get(c, 'orders'));
  });

  it('refuses a record whose key is not in the key file, and answers its replay with the same error rather than a conflict or a success', async () => {
    const requestId = randomUUID();
    assert.equal((await post('{"k":1}', { requestId })).status, 201);
    await records.updateOne({ _id: requestId }, { $set: { 'enc.keyId': 'retired-key' } });
    assertUnreadable(await get(requestId));
    assertUnreadable(await post('{"k":1}', { requestId }));
  });

  it("reads a record stored in clear before encryption existed, as it was", async () => {
    const id = randomUUID();
    await records.insertOne({ _id: id, collection: 'notes', client: 'c', tokenId: '0123456789abcdef', data: { legacy: true }, bodySha256: '0'.repeat(64), createdAt: new Date() });
    const res = await get(id);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((res.json as { data: unknown }).data, { legacy: true });
  });
});

describe("records at rest: a copy of the database's data directory holds no record content (FerretDB)", function () {
  this.timeout(60_000);

  it("finds no canary written through core's API in any file, in the same files where a document written in clear is found", async () => {
    const [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    const core = await startCoreServer({ pki, db: database.db });
    let coreClosed = false;
    try {
      const token = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
      const canary = `canary-${randomBytes(12).toString('hex')}`;
      // Positive control: the same words, written by the driver without core, in the same database.
      const control = `control-${randomBytes(12).toString('hex')}`;
      for (const i of [1, 2, 3]) {
        const res = await coreRequest({
          port: core.port,
          method: 'POST',
          path: '/v1/records/notes',
          headers: { 'content-type': 'application/json', 'x-request-id': randomUUID(), authorization: `Bearer ${token}` },
          body: JSON.stringify({ title: canary, copy: i, [`key-${canary}`]: 'in a key too' }),
          ca: pki.ca.certPem,
          client: pki.broker,
        });
        assert.equal(res.status, 201, res.text);
      }
      await database.db.collection('probe').insertOne({ title: control });

      // As a copy of the live volume would see them (the writes are in the WAL)...
      const live = { canary: filesHolding(database.dataDir, canary), control: filesHolding(database.dataDir, control) };
      assert.notDeepEqual(live.control, [], `the search found the clear control in none of ${allFiles(database.dataDir).join(', ')}`);
      assert.deepEqual(live.canary, [], 'record content in clear on the data volume');

      // ...and after a clean stop, checkpointed into the database file.
      await core.close();
      coreClosed = true;
      await database.stop();
      const stopped = { canary: filesHolding(database.dataDir, canary), control: filesHolding(database.dataDir, control) };
      assert.notDeepEqual(stopped.control, [], `the search found the clear control in none of ${allFiles(database.dataDir).join(', ')}`);
      assert.deepEqual(stopped.canary, [], 'record content in clear on the data volume');
    } finally {
      if (!coreClosed) await core.close();
      await database.cleanup();
    }
  });
});
