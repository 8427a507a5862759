import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { firstDataKeySet, formatDataKeyFile, newDataKey, parseDataKeyFile } from '../../../../services/common/pki/data-key-file';
import { DataKeyRing } from '../../../../services/core/storage/data-keys';
import { KeyRotation } from '../../../../services/core/storage/key-rotation';
import type { RecordDoc } from '../../../../services/core/storage/records';
import { runAdminCli } from '../../../support/admin-cli';
import { coreRequest, storeNote, createCorePki, startCoreServer, startScratchDatabase, type CorePki, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';
import { silentLogger } from '../../../support/logger';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';
import type { KeyStatusReport as KeyStatus } from '../../../../services/core/admin/keys';

/** How often the service under test re-reads its key file: faster than core's 1 s, so the suite stays short. */
const FOLLOW_MS = 100;

describe('nonstop-admin keys: rotating the data key while core serves (FerretDB, real key file, real CLI)', function () {
  // Bounded work, generous time: the machine is shared and often far busier than its 2 cores.
  this.timeout(300_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let pki: CorePki;
  let core: CoreServer;
  let stopFollowing: () => void;
  let secrets: { dir: string; cleanup: () => void };
  let runDir: { dir: string; cleanup: () => void };
  let keysFile: string;
  let env: Record<string, string>;
  let token: string;
  let rotation: KeyRotation;
  /** Every record acknowledged so far, with the body it was written with. */
  const written = new Map<string, Record<string, unknown>>();

  before(async () => {
    [database, pki] = await Promise.all([startScratchDatabase(), createCorePki()]);
    secrets = tempDir('nonstop-core-secrets-');
    runDir = tempDir('nonstop-run-');
    keysFile = join(secrets.dir, 'data-keys.json');
    writeFileSync(keysFile, formatDataKeyFile(firstDataKeySet()), { mode: 0o600 });
    // Wired as services/core/main.ts wires it: the ring from the file, and the follower
    // that re-reads the file and tells the database which key new records get.
    const ring = DataKeyRing.load(keysFile, silentLogger());
    core = await startCoreServer({ pki, db: database.db, dataKeys: ring });
    rotation = new KeyRotation(database.db);
    stopFollowing = rotation.follow(ring, FOLLOW_MS, silentLogger());
    env = { DB_ENGINE: 'ferretdb', DB_PORT: String(database.cfg.port), DATA_DIR: database.dataDir, RUN_DIR: runDir.dir, CORE_DATA_KEYS_FILE: keysFile };
    token = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'] })).token;
    await waitFor('the service to announce its key', async () => (await rotation.serviceActiveKey()) === ring.active().id);
  });

  after(async () => {
    stopFollowing?.();
    await core?.close();
    await database?.cleanup();
    secrets?.cleanup();
    runDir?.cleanup();
  });

  const records = () => database.db.collection<RecordDoc>('records');

  async function write(body: Record<string, unknown>): Promise<string> {
    const id = await storeNote(core, pki, token, body);
    written.set(id, body);
    return id;
  }

  /**
   * Reads every record written so far as the API does (core's RecordStore.get, which decrypts
   * it) and returns the ones that did not come back as written; one in fifty also through
   * the API itself. A fresh TLS connection per read would make thousands of reads take minutes.
   */
  async function unreadable(): Promise<string[]> {
    const bad: string[] = [];
    let n = 0;
    for (const [id, body] of written) {
      try {
        const rec = await core.records.get('notes', id);
        if (!rec) bad.push(`${id}: not found`);
        else assert.deepEqual(rec.data, body, id);
      } catch (err) {
        bad.push(`${id}: ${(err as Error).message}`);
      }
      if (n++ % 50 !== 0) continue;
      const res = await coreRequest({ port: core.port, path: `/v1/records/notes/${id}`, headers: { authorization: `Bearer ${token}` }, ca: pki.ca.certPem, client: pki.broker });
      if (res.status !== 200) bad.push(`${id} through the API: ${res.status} ${res.text}`);
      else assert.deepEqual((res.json as { data: unknown }).data, body, id);
    }
    return bad;
  }

  async function status(): Promise<KeyStatus> {
    const run = await runAdminCli(['keys', 'status'], env);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as KeyStatus;
  }

  it('rotates under concurrent writes through the API: a new active key, every record rewrapped to it, none lost, every one readable', async () => {
    const first = parseDataKeyFile(readFileSync(keysFile, 'utf8')).active;
    for (let i = 0; i < 40; i++) await write({ phase: 'before', i });
    // Records from before encryption, in clear: the rotation encrypts them too.
    for (let i = 0; i < 10; i++) {
      const id = randomUUID();
      await records().insertOne({ _id: id, collection: 'notes', client: 'legacy', tokenId: '0123456789abcdef', data: { phase: 'legacy', i }, bodySha256: '0'.repeat(64), createdAt: new Date() });
      written.set(id, { phase: 'legacy', i });
    }
    assert.deepEqual(await status(), { active: first, keys: [first], serviceActive: first, recordsByKey: { [first]: 40 }, recordsInClear: 10 });

    // Three writers keep writing through the API for the whole rotation, and a little after it.
    let halted = false;
    const failures: string[] = [];
    let during = 0;
    const writers = Array.from({ length: 3 }, async (_, k) => {
      for (let i = 0; !halted; i++) {
        try {
          await write({ phase: 'during', k, i });
          during++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    await waitFor('writes under way', () => during >= 10, 60_000, 10);
    const run = await runAdminCli(['keys', 'rotate'], env, 90_000);
    const atRotationEnd = during;
    await waitFor('writes after the rotation', () => during >= atRotationEnd + 10, 60_000, 10);
    halted = true;
    await Promise.all(writers);

    assert.equal(run.code, 0, run.stderr);
    const second = run.stdout.trim();
    assert.notEqual(second, first);
    assert.deepEqual(failures, [], 'a write failed during the rotation');
    assert.ok(atRotationEnd > 10, `writes continued during the rotation (${atRotationEnd})`);

    assert.equal(await records().countDocuments({}), written.size, 'records lost or added');
    assert.deepEqual(await unreadable(), []);
    const after = await status();
    assert.deepEqual({ ...after, keys: [...after.keys].sort() }, { active: second, keys: [first, second].sort(), serviceActive: second, recordsByKey: { [second]: written.size }, recordsInClear: 0 });
    assert.equal(await records().countDocuments({ data: { $exists: true } }), 0, 'content left in clear');
  });

  it('refuses to retire a key that still wraps records, or the active key, and retires the old key once rewrap moved its records', async () => {
    const before = parseDataKeyFile(readFileSync(keysFile, 'utf8'));
    const old = before.active;
    for (let i = 0; i < 10; i++) await write({ phase: 'retire', i });

    // A new active key put in the file by hand, without rewrapping: the old key still wraps every record.
    const next = newDataKey();
    writeFileSync(keysFile, formatDataKeyFile({ active: next.id, keys: new Map([...before.keys, [next.id, next.key]]) }));
    await waitFor('the service to use the new key', async () => (await rotation.serviceActiveKey()) === next.id);
    for (let i = 0; i < 5; i++) await write({ phase: 'retire, new key', i });
    const inUse = (await status()).recordsByKey[old];
    assert.ok(inUse !== undefined && inUse > 0);

    const refused = await runAdminCli(['keys', 'retire', old], env);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${inUse} records still use key ${old}`));
    const activeRefused = await runAdminCli(['keys', 'retire', next.id], env);
    assert.equal(activeRefused.code, 1, activeRefused.stderr);
    const unknown = await runAdminCli(['keys', 'retire', 'no-such-key'], env);
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.ok(parseDataKeyFile(readFileSync(keysFile, 'utf8')).keys.has(old), 'a refused retire changed the key file');
    assert.deepEqual(await unreadable(), []);

    const rewrap = await runAdminCli(['keys', 'rewrap'], env, 90_000);
    assert.equal(rewrap.code, 0, rewrap.stderr);
    const retire = await runAdminCli(['keys', 'retire', old], env);
    assert.equal(retire.code, 0, retire.stderr);
    const left = parseDataKeyFile(readFileSync(keysFile, 'utf8'));
    assert.equal(left.keys.has(old), false);
    assert.equal(left.active, next.id);
    // The service follows the file: every record still reads, none needs the retired key.
    await waitFor('the service to drop the retired key', async () => (await status()).keys.includes(old) === false);
    assert.deepEqual(await unreadable(), []);
    assert.deepEqual((await status()).recordsByKey, { [next.id]: written.size });
  });

  it('exits 2 naming CORE_DATA_KEYS_FILE when the key file is missing or malformed, changing nothing', async () => {
    const missing = await runAdminCli(['keys', 'rotate'], { ...env, CORE_DATA_KEYS_FILE: join(secrets.dir, 'absent.json') });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /CORE_DATA_KEYS_FILE=.*absent\.json.*cannot read \(ENOENT\)/);
    const bad = join(secrets.dir, 'bad.json');
    writeFileSync(bad, '{"active":"a","keys":{"a":"c2hvcnQ="}}');
    const malformed = await runAdminCli(['keys', 'status'], { ...env, CORE_DATA_KEYS_FILE: bad });
    assert.equal(malformed.code, 2, malformed.stderr);
    assert.match(malformed.stderr, /CORE_DATA_KEYS_FILE=.*bad\.json.*key a is 5 bytes, expected 32/);
    assert.equal(readFileSync(bad, 'utf8'), '{"active":"a","keys":{"a":"c2hvcnQ="}}');
  });
});
