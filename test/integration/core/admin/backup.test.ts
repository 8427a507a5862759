import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Binary } from 'mongodb';
import { firstDataKeySet, formatDataKeyFile } from '../../../../services/common/pki/data-key-file';
import type { BackupRefusal } from '../../../../services/core/backup/backup-refused-error';
import { recordLine } from '../../../../services/core/backup/documents';
import { verifyBackup } from '../../../../services/core/backup/format';
import { DataKeyRing } from '../../../../services/core/storage/data-keys';
import type { RecordDoc } from '../../../../services/core/storage/records';
import { runAdminCli } from '../../../support/admin-cli';
import { coreRequest, storeNote, createCorePki, startCoreServer, startScratchDatabase, type CorePki, type CoreServer, type TestDatabase } from '../../../support/core-fixtures';
import { silentLogger } from '../../../support/logger';
import { tempDir } from '../../../support/tmp';
import { canaryForms, refusal } from '../../../support/backup-checks';
import { waitFor } from '../../../support/wait';

type Scratch = TestDatabase & { dataDir: string; cleanup: () => Promise<void> };


describe('nonstop-admin backup and restore (FerretDB, real key file, real CLI)', function () {
  // Bounded work, generous time: the machine is shared and often far busier than its 2 cores.
  this.timeout(300_000);
  let source: Scratch;
  let target: Scratch;
  let pki: CorePki;
  let core: CoreServer;
  let targetCore: CoreServer;
  let files: { dir: string; cleanup: () => void };
  let keysFile: string;
  let ring: DataKeyRing;
  let sourceEnv: Record<string, string>;
  let targetEnv: Record<string, string>;
  let token: string;
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  /** Every record acknowledged, with the body it was written with and when its 201 arrived. */
  const written = new Map<string, { body: Record<string, unknown>; ackedAt: number }>();
  /** The backup the first test takes, and the ids acknowledged before it was started. */
  let backupFile: string;
  let ackedBefore: string[];

  before(async () => {
    [source, target, pki] = await Promise.all([startScratchDatabase(), startScratchDatabase(), createCorePki()]);
    files = tempDir('nonstop-backup-');
    keysFile = join(files.dir, 'data-keys.json');
    writeFileSync(keysFile, formatDataKeyFile(firstDataKeySet()), { mode: 0o600 });
    ring = DataKeyRing.load(keysFile, silentLogger());
    [core, targetCore] = await Promise.all([startCoreServer({ pki, db: source.db, dataKeys: ring }), startCoreServer({ pki, db: target.db, dataKeys: ring })]);
    const env = (db: Scratch): Record<string, string> => ({ DB_ENGINE: 'ferretdb', DB_PORT: String(db.cfg.port), DATA_DIR: db.dataDir, RUN_DIR: files.dir, CORE_DATA_KEYS_FILE: keysFile });
    sourceEnv = env(source);
    targetEnv = env(target);
    token = (await core.tokens.create({ collections: ['notes'], scopes: ['read', 'write'], label: 'backup test' })).token;
  });

  after(async () => {
    await core?.close();
    await targetCore?.close();
    await source?.cleanup();
    await target?.cleanup();
    files?.cleanup();
  });

  async function write(body: Record<string, unknown>): Promise<string> {
    const id = await storeNote(core, pki, token, body);
    written.set(id, { body, ackedAt: Date.now() });
    return id;
  }

  const count = async (db: Scratch): Promise<{ records: number; tokens: number }> => ({
    records: await db.db.collection('records').countDocuments({}),
    tokens: await db.db.collection('tokens').countDocuments({}),
  });

  it('backs up while writers keep writing: every record acknowledged before it started is in the file, sealed exactly as stored, no content in clear', async () => {
    for (let i = 0; i < 300; i++) await write({ phase: 'before', i, secret: canary });
    let halted = false;
    const failures: string[] = [];
    const writers = Array.from({ length: 3 }, async (_, k) => {
      for (let i = 0; !halted; i++) {
        try {
          await write({ phase: 'during', k, i, secret: canary });
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    await waitFor('writes under way', () => written.size >= 330, 60_000, 10);
    backupFile = join(files.dir, 'backup.ndjson');
    const startedAt = Date.now();
    ackedBefore = [...written].filter(([, w]) => w.ackedAt <= startedAt).map(([id]) => id);
    const run = await runAdminCli(['backup', '--out', backupFile], sourceEnv, 120_000);
    const endedAt = Date.now();
    await waitFor('writes after the backup', () => [...written.values()].some((w) => w.ackedAt > endedAt + 200), 60_000, 10);
    halted = true;
    await Promise.all(writers);

    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(failures, []);
    const during = [...written.values()].filter((w) => w.ackedAt > startedAt && w.ackedAt < endedAt).length;
    assert.ok(during > 0, 'no write was acknowledged while the backup ran: the test did not exercise writes during it');

    const bytes = readFileSync(backupFile);
    const backup = verifyBackup(bytes, ring);
    const inFile = new Map(backup.records.map((r) => [r.id, r]));
    const missing = ackedBefore.filter((id) => !inFile.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${ackedBefore.length} records acknowledged before the backup started are not in it`);
    // Sealed as stored: each line is the stored document, byte for byte (no record was rewrapped meanwhile).
    const stored = await source.db.collection<RecordDoc>('records').find({ _id: { $in: ackedBefore } }).toArray();
    assert.equal(stored.length, ackedBefore.length);
    for (const doc of stored) assert.deepEqual(inFile.get(doc._id), recordLine(doc), doc._id);
    assert.equal(backup.tokens.length, 1);
    // The canary is in what the API answers (positive control), and nowhere in the file.
    const back = await core.records.get('notes', ackedBefore[0]!);
    assert.equal(back?.data.secret, canary);
    for (const form of canaryForms(canary)) assert.equal(bytes.includes(form), false, `record content in the backup (${form})`);
    assert.equal(bytes.includes(token), false, 'a token in clear in the backup');
    // What nonstop-admin said carries counts, not content.
    assert.match(run.stderr, new RegExp(`backup of ${backup.records.length} records and 1 tokens`));
    assert.equal(run.stderr.includes(canary) || run.stderr.includes(token), false);
    // Nothing but the finished file is left beside it.
    assert.deepEqual(readdirSync(files.dir).filter((f) => f.includes('backup')), ['backup.ndjson']);
  });

  it('writes the same backup to stdout when given no --out, for docker exec ... > FILE', async () => {
    const run = await runAdminCli(['backup'], sourceEnv, 120_000);
    assert.equal(run.code, 0, run.stderr);
    const backup = verifyBackup(Buffer.from(run.stdout, 'utf8'), ring);
    assert.equal(backup.records.length, await source.db.collection('records').countDocuments({}));
    for (const form of canaryForms(canary)) assert.equal(run.stdout.includes(form), false, form);
  });

  it('refuses a damaged or foreign backup with one error line and exit 1, leaving the fresh target as it was', async () => {
    const good = readFileSync(backupFile);
    const before = await count(target);
    assert.deepEqual(before, { records: 0, tokens: 0 });
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length / 2)]! ^= 0x01;
    const lines = good.toString('utf8').split('\n');
    const otherKeys = join(files.dir, 'other-keys.json');
    writeFileSync(otherKeys, formatDataKeyFile(firstDataKeySet()), { mode: 0o600 });
    const cases: { what: string; bytes: Buffer; code: BackupRefusal; env?: Record<string, string> }[] = [
      { what: 'a flipped byte', bytes: flipped, code: 'checksum_mismatch' },
      { what: 'cut in half', bytes: good.subarray(0, Math.floor(good.length / 2)), code: 'truncated' },
      { what: 'no trailer', bytes: Buffer.from(`${lines.slice(0, -2).join('\n')}\n`), code: 'truncated' },
      { what: 'another format', bytes: Buffer.from('{"format":"mongodump","version":1}\n{"_id":"x"}\n'), code: 'not_a_backup' },
      { what: 'a future version', bytes: Buffer.from(good.toString('utf8').replace('"version":1', '"version":2')), code: 'unsupported_version' },
      { what: "keys the target's key file does not hold", bytes: good, code: 'unknown_key', env: { ...targetEnv, CORE_DATA_KEYS_FILE: otherKeys } },
    ];
    for (const c of cases) {
      const file = join(files.dir, `refused-${c.code}.ndjson`);
      writeFileSync(file, c.bytes);
      const run = await runAdminCli(['restore', '--in', file], c.env ?? targetEnv);
      assert.equal(run.code, 1, `${c.what}: ${run.stderr}`);
      assert.equal(refusal(run.stderr), c.code, c.what);
      assert.deepEqual(await count(target), before, `${c.what} changed the target`);
    }
  });

  it('restores into a fresh core every record of the backup, readable there as written, with the tokens that wrote them', async () => {
    const check = await runAdminCli(['restore', '--in', backupFile, '--check'], targetEnv);
    assert.equal(check.code, 0, check.stderr);
    assert.deepEqual(await count(target), { records: 0, tokens: 0 }, '--check wrote');

    const run = await runAdminCli(['restore', '--in', backupFile], targetEnv, 120_000);
    assert.equal(run.code, 0, run.stderr);
    const backup = verifyBackup(readFileSync(backupFile), ring);
    assert.deepEqual(await count(target), { records: backup.records.length, tokens: 1 });
    const bad: string[] = [];
    let n = 0;
    for (const id of ackedBefore) {
      const rec = await targetCore.records.get('notes', id);
      if (!rec) bad.push(`${id}: not found`);
      else if (!isDeepStrictEqual(rec.data, written.get(id)!.body)) bad.push(`${id}: other content`);
      // One in twenty through the target's API, with the token the source issued.
      if (n++ % 20 !== 0) continue;
      const res = await coreRequest({ port: targetCore.port, path: `/v1/records/notes/${id}`, headers: { authorization: `Bearer ${token}` }, ca: pki.ca.certPem, client: pki.broker });
      if (res.status !== 200) bad.push(`${id} through the API: ${res.status} ${res.text}`);
    }
    assert.deepEqual(bad, []);
    assert.equal(run.stderr.includes(canary) || run.stderr.includes(token), false);
  });

  it('refuses to restore into a core that holds records unless --merge, which adds what is missing and keeps what the core holds', async () => {
    const before = await count(target);
    const again = await runAdminCli(['restore', '--in', backupFile], targetEnv);
    assert.equal(again.code, 1, again.stderr);
    assert.equal(refusal(again.stderr), 'target_not_empty');
    assert.deepEqual(await count(target), before);

    // One record lost in the target, another holding other content under its id.
    const records = target.db.collection<RecordDoc>('records');
    const [lost, changed] = ackedBefore;
    await records.deleteOne({ _id: lost! });
    const doc = (await records.findOne({ _id: changed! }))!;
    const other = Buffer.from(doc.enc!.ciphertext.buffer);
    other[0]! ^= 0x01;
    await records.updateOne({ _id: changed! }, { $set: { 'enc.ciphertext': new Binary(other) } });

    const merged = await runAdminCli(['restore', '--in', backupFile, '--merge'], targetEnv, 120_000);
    assert.equal(merged.code, 1, merged.stderr);
    assert.match(merged.stderr, /: 1 records restored, \d+ already there, 1 kept as this core holds them; 0 tokens restored, 1 already there/);
    assert.ok(merged.stderr.includes(changed!), merged.stderr);
    assert.deepEqual(await count(target), before);
    assert.ok(await targetCore.records.get('notes', lost!), 'the lost record is back');
    assert.deepEqual(Buffer.from((await records.findOne({ _id: changed! }))!.enc!.ciphertext.buffer), other, 'merge overwrote a record the target holds');
  });

  it('leaves no file under --out when the backup is killed midway, and what it left behind is refused as truncated', async () => {
    const out = join(files.dir, 'killed.ndjson');
    const child = spawn(process.execPath, [join(__dirname, '../../../../services/core/admin/cli.js'), 'backup', '--out', out], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...sourceEnv }, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Whatever file the backup writes first exists from before its first read of the database.
    const partial = await waitFor('the backup to start writing', () => readdirSync(files.dir).find((f) => f.includes('killed.ndjson')), 20_000, 2);
    child.kill('SIGKILL');
    await exited;
    assert.equal(existsSync(out), false, 'a partial backup was left under the name given with --out (or the backup finished before it could be killed)');
    const run = await runAdminCli(['restore', '--in', join(files.dir, partial), '--check'], targetEnv);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(refusal(run.stderr), 'truncated');
  });

  it('refuses to back up a core still holding a record stored in clear, writing no file', async () => {
    await source.db.collection<RecordDoc>('records').insertOne({ _id: randomUUID(), collection: 'notes', client: 'legacy', tokenId: '0123456789abcdef', data: { secret: canary }, bodySha256: '0'.repeat(64), createdAt: new Date() });
    const out = join(files.dir, 'in-clear.ndjson');
    const run = await runAdminCli(['backup', '--out', out], sourceEnv);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(refusal(run.stderr), 'records_in_clear');
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(files.dir).filter((f) => f.includes('in-clear')), []);
  });
});
