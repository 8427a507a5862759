import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { newDataKey, parseDataKeyFile } from '../../../services/common/pki/data-key-file';
import { recordLine } from '../../../services/core/backup/documents';
import { BackupEncoder, verifyBackup } from '../../../services/core/backup/format';
import { DataKeyRing } from '../../../services/core/storage/data-keys';
import { sealRecord } from '../../../services/core/storage/record-cipher';
import { toSealedDoc } from '../../../services/core/storage/records';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { countRecords, queryCore } from '../../support/stack/core-db';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';
import { canaryForms, refusal } from '../../support/backup-checks';


describe('backup under write load and restore into a fresh core, through the whole chain (the compose stack)', function () {
  this.timeout(900_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;
  let keys: DataKeyRing;
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  /** Every record whose 201 arrived, with its body and when the 201 arrived. */
  const written = new Map<string, { body: Record<string, unknown>; ackedAt: number }>();
  let backup: Buffer;
  let ackedBefore: string[];
  let kept: string;
  let erased: string;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes'], 'read,write,delete');
    let last = 'no answer yet';
    await waitFor('the chain', async () => {
      const r = await api.post('notes', { title: 'first', body: canary }, token).catch((err: unknown) => ({ status: 0, text: (err as Error).message, json: undefined }));
      last = `${r.status} ${r.text}`;
      return r.status === 201;
    }, 120_000, 250).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last answer: ${last}`);
    });
    // The test reads core's key file to check the backup as restore would (the operator's copy of it).
    const file = await stack.exec('core', ['cat', '/etc/nonstop/core/data-keys.json']);
    assert.equal(file.exitCode, 0, file.stderr);
    keys = DataKeyRing.of(parseDataKeyFile(file.stdout));
  });

  after(async () => {
    await stack?.down();
  });

  async function write(body: Record<string, unknown>): Promise<string> {
    const res = await api.post('notes', body, token);
    if (res.status !== 201) throw new Error(`write answered ${res.status} ${res.text}`);
    const { id } = res.json as { id: string };
    written.set(id, { body, ackedAt: Date.now() });
    return id;
  }

  it('backs up mid-load: every record whose 201 arrived before it started is in it, sealed (no canary), and a record erased before it is not', async () => {
    kept = await write({ title: 'kept', body: canary });
    erased = await write({ title: 'erased', body: canary });
    const del = await api.send('DELETE', `/v1/records/notes/${erased}`, { token });
    assert.equal(del.status, 200, del.text);
    assert.equal((await api.get('notes', erased, token)).status, 404, 'the erase took effect');
    written.delete(erased);
    // Positive control for the canary search: the API answers it in the kept record.
    const back = await api.get('notes', kept, token);
    assert.equal(back.status, 200, back.text);
    assert.equal((back.json as { data: { body: string } }).data.body, canary);

    let halted = false;
    const failures: string[] = [];
    const writers = Array.from({ length: 3 }, async (_, k) => {
      for (let i = 0; !halted; i++) {
        try {
          await write({ title: `load ${k} ${i}`, body: canary, tags: [String(k), String(i)] });
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    await waitFor('writes under way', () => written.size >= 150, 120_000, 10);
    const startedAt = Date.now();
    ackedBefore = [...written].filter(([, w]) => w.ackedAt <= startedAt).map(([id]) => id);
    const run = await stack.exec('core', ['nonstop-admin', 'backup'], { timeoutMs: 300_000 });
    const endedAt = Date.now();
    await waitFor('writes after the backup', () => [...written.values()].some((w) => w.ackedAt > endedAt + 200), 120_000, 10);
    halted = true;
    await Promise.all(writers);

    assert.equal(run.exitCode, 0, run.stderr);
    assert.deepEqual(failures, []);
    const during = [...written.values()].filter((w) => w.ackedAt > startedAt && w.ackedAt < endedAt).length;
    assert.ok(during > 0, 'no write was acknowledged while the backup ran: the test did not exercise writes during it');
    backup = Buffer.from(run.stdout, 'utf8');
    const checked = verifyBackup(backup, keys);
    const ids = new Set(checked.records.map((r) => r.id));
    const missing = ackedBefore.filter((id) => !ids.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${ackedBefore.length} records acknowledged before the backup started are not in it`);
    assert.ok(ids.has(kept), 'positive control: the kept record is in the backup');
    assert.equal(ids.has(erased), false, 'a record erased before the backup is in it');
    for (const form of canaryForms(canary)) assert.equal(backup.includes(form), false, `record content in the backup (${form})`);
    assert.equal(backup.includes(token), false, 'a token in clear in the backup');
    assert.equal(run.stderr.includes(canary), false);
  });

  it('refuses a damaged and a foreign backup in a fresh core (fresh data volume, same key file), then restores the backup there: every record acknowledged before it readable through the chain', async () => {
    assert.ok(backup, 'the backup test ran');
    await stack.replace('core', (s) => ({ ...s, volumes: s.volumes.map((v) => (v.target === '/var/lib/nonstop/data' ? { ...v, source: 'core-data-restored' } : v)) }));
    const empty = { records: 0, tokens: 0 };
    const held = async () => ({ records: await countRecords(stack), tokens: await queryCore<number>(stack, "records.db.collection('tokens').countDocuments({})") });
    assert.deepEqual(await held(), empty, 'the new core is not fresh');
    await waitFor('the chain to reach the new core', async () => (await api.get('notes', kept, token)).status === 401, 120_000, 500);

    const damaged = Buffer.from(backup);
    const at = damaged.indexOf('"ciphertext":"', damaged.indexOf('"t":"record"')) + 20;
    damaged[at] = damaged[at] === 0x41 ? 0x42 : 0x41;
    // Another deployment's backup: its own key, which this core's key file does not hold.
    const foreignKey = newDataKey();
    const foreignKeys = DataKeyRing.of({ active: foreignKey.id, keys: new Map([[foreignKey.id, foreignKey.key]]) });
    const enc = new BackupEncoder(new Date(), foreignKeys.active());
    const id = randomUUID();
    const sealed = toSealedDoc(sealRecord(foreignKeys, { id, collection: 'notes' }, JSON.stringify({ title: 'foreign' })));
    const foreign = Buffer.concat([enc.header(), enc.record(recordLine({ _id: id, collection: 'notes', client: 'other', tokenId: '0123456789abcdef', enc: sealed, createdAt: new Date() })!), enc.trailer()]);

    for (const [what, bytes, code] of [['damaged', damaged, 'checksum_mismatch'], ['foreign', foreign, 'unknown_key']] as const) {
      const run = await stack.exec('core', ['nonstop-admin', 'restore'], { input: bytes, timeoutMs: 120_000 });
      assert.equal(run.exitCode, 1, `${what}: ${run.stderr}`);
      assert.equal(refusal(run.stderr), code, what);
      assert.deepEqual(await held(), empty, `the ${what} backup changed the target`);
    }

    const run = await stack.exec('core', ['nonstop-admin', 'restore'], { input: backup, timeoutMs: 300_000 });
    assert.equal(run.exitCode, 0, run.stderr);
    const checked = verifyBackup(backup, keys);
    assert.deepEqual(await held(), { records: checked.records.length, tokens: checked.tokens.length });
    assert.equal(run.stderr.includes(canary), false);

    // Through gateway → broker → new core, with the token the old core issued (restored).
    const bad: string[] = [];
    const queue = [...ackedBefore];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
          const res = await api.get('notes', id, token);
          if (res.status !== 200) bad.push(`${id}: ${res.status} ${res.text}`);
          else assert.deepEqual((res.json as { data: unknown }).data, written.get(id)!.body, id);
        }
      }),
    );
    assert.deepEqual(bad, []);
    assert.equal((await api.get('notes', erased, token)).status, 404, 'the restore brought back an erased record');
  });
});
