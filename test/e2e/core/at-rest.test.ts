import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { demux, type Stack } from '../../support/stack/stack';
import { upStack } from '../../support/stack/fixture';
import { queryCore } from '../../support/stack/core-db';
import { waitFor } from '../../support/wait';
import type { KeyStatusReport as KeyStatus } from '../../../services/core/admin/keys';

/** Every regular file of a directory in a container, as the Docker API copies it out (GET /archive). */
async function copyOut(stack: Stack, service: string, path: string): Promise<Map<string, Buffer>> {
  const stream = (await stack.container(service).getArchive({ path })) as unknown as Readable;
  const files = new Map<string, Buffer>();
  const ex = extract();
  ex.on('entry', (header, body, next) => {
    const chunks: Buffer[] = [];
    body.on('data', (c: unknown) => chunks.push(c as Buffer));
    body.on('end', () => {
      if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    stream.on('error', reject);
    stream.pipe(ex);
  });
  return files;
}

const holding = (files: Map<string, Buffer>, text: string): string[] => [...files].filter(([, bytes]) => bytes.includes(Buffer.from(text, 'utf8'))).map(([name]) => name);

describe('core encrypts records at rest (the compose stack)', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  const body = { title: canary, body: `written through the gateway: ${canary}`, tags: [canary] };
  let id: string;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    let last = 'no answer yet';
    const res = await waitFor('the chain', async () => {
      const r = await api.post('notes', body, token).catch((err: unknown) => ({ status: 0, text: (err as Error).message, json: undefined }));
      last = `${r.status} ${r.text}`;
      return r.status === 201 ? r : undefined;
    }, 120_000, 250).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last answer: ${last}`);
    });
    id = (res.json as { id: string }).id;
  });

  after(async () => {
    await stack?.down();
  });

  it("leaves no copy of an erased record's id or ciphertext in a copy of core's data volume, where the same copy finds both before the erase and a record not erased after it", async () => {
    const full = await createToken(stack, ['notes'], 'read,write,delete');
    const store = async (title: string): Promise<string> => {
      const res = await api.post('notes', { title, body: 'x'.repeat(200) }, full);
      assert.equal(res.status, 201, res.text);
      return (res.json as { id: string }).id;
    };
    const victim = await store('erase me');
    const keeper = await store('keep me');
    // The ciphertext as FerretDB's JSON holds it (base64), in 32-character pieces: a record
    // past a page's room continues on another page, splitting the text.
    const needles = async (id: string): Promise<string[]> => {
      const b64 = await queryCore<string>(stack, `records.findOne({ _id: ${JSON.stringify(id)} }).then((d) => Buffer.from(d.enc.ciphertext.buffer).toString('base64'))`);
      const pieces = [id];
      for (let at = 0; at + 32 <= b64.length; at += 256) pieces.push(b64.slice(at, at + 32));
      return pieces;
    };
    const [victimNeedles, keeperNeedles] = [await needles(victim), await needles(keeper)];
    const holdingAny = (files: Map<string, Buffer>, texts: string[]): string[] => [...new Set(texts.flatMap((t) => holding(files, t)))];

    const before = await copyOut(stack, 'core', '/var/lib/nonstop/data');
    assert.notDeepEqual(holding(before, victim), [], 'positive control: the id is not in the copy before the erase');
    assert.notDeepEqual(holdingAny(before, victimNeedles.slice(1)), [], 'positive control: the ciphertext is not in the copy before the erase');

    const erased = await api.send('DELETE', `/v1/records/notes/${victim}`, { token: full });
    assert.deepEqual([erased.status, erased.json], [200, { id: victim, erased: true }]);
    assert.equal((await api.get('notes', victim, full)).status, 404);

    const after = await copyOut(stack, 'core', '/var/lib/nonstop/data');
    assert.deepEqual(holding(after, victim), [], 'the erased id is still on the data volume');
    assert.deepEqual(holdingAny(after, victimNeedles.slice(1)), [], 'the erased ciphertext is still on the data volume');
    // Positive control after: the record not erased, by the same search in the same copy.
    assert.notDeepEqual(holding(after, keeper), [], 'the kept id is not found after the erase');
    assert.notDeepEqual(holdingAny(after, keeperNeedles.slice(1)), [], 'the kept ciphertext is not found after the erase');
  });

  async function keyStatus(): Promise<KeyStatus> {
    const res = await stack.exec('core', ['nonstop-admin', 'keys', 'status']);
    assert.equal(res.exitCode, 0, res.stderr);
    return JSON.parse(res.stdout) as KeyStatus;
  }

  it("leaves no canary written through the gateway in a copy of core's data volume, where a token label written in clear is found", async () => {
    const back = await api.get('notes', id, token);
    assert.equal(back.status, 200, back.text);
    assert.deepEqual((back.json as { data: unknown }).data, body);
    // Positive control: a token's label is stored in clear, in the same database files.
    const control = `control-${randomBytes(12).toString('hex')}`;
    await createToken(stack, ['notes'], 'read', ['--label', control]);

    const files = await copyOut(stack, 'core', '/var/lib/nonstop/data');
    assert.ok([...files.keys()].some((f) => f.endsWith('.sqlite') || f.includes('mongodb')), `no database files in the copy: ${[...files.keys()].join(', ')}`);
    assert.notDeepEqual(holding(files, control), [], `the search found the clear control in none of ${[...files.keys()].join(', ')}`);
    assert.deepEqual(holding(files, canary), [], 'record content in clear on the data volume');
  });

  it('refuses to rotate from inside core, whose key mount is read-only, and rotates from a container that mounts the keys writable, while core serves', async () => {
    const before = await keyStatus();
    assert.equal(before.serviceActive, before.active);
    assert.ok((before.recordsByKey[before.active] ?? 0) >= 1, JSON.stringify(before));

    const inCore = await stack.exec('core', ['nonstop-admin', 'keys', 'rotate']);
    assert.equal(inCore.exitCode, 2, inCore.stderr);
    assert.match(inCore.stderr, /CORE_DATA_KEYS_FILE=.*cannot write \(EROFS\)/);
    assert.deepEqual(await keyStatus(), before);

    // The operator's way (README): the core image, in core's network namespace (its database
    // listens on loopback), the key volume writable and the data volume read-only (the
    // database password).
    const core = await stack.inspect('core');
    const admin = await stack.docker.createContainer({
      name: `${stack.project}_keyadmin_${randomBytes(2).toString('hex')}`,
      Image: stack.spec.services.core!.image,
      Cmd: ['nonstop-admin', 'keys', 'rotate'],
      User: '10001:10001',
      Env: Object.entries(stack.spec.services.core!.environment).map(([k, v]) => `${k}=${v}`),
      Labels: { 'nonstop.test': stack.project },
      HostConfig: {
        NetworkMode: `container:${core.Id}`,
        ReadonlyRootfs: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges:true'],
        Mounts: [
          { Type: 'volume', Source: stack.name('core-keys'), Target: '/etc/nonstop/core', ReadOnly: false },
          { Type: 'volume', Source: stack.name('core-data'), Target: '/var/lib/nonstop/data', ReadOnly: true },
        ],
      },
    });
    await admin.start();
    const exit = (await admin.wait()) as { StatusCode: number };
    const output = demux(await admin.logs({ stdout: true, stderr: true }));
    assert.equal(exit.StatusCode, 0, output);

    const after = await keyStatus();
    assert.notEqual(after.active, before.active);
    assert.deepEqual([...after.keys].sort(), [before.active, after.active].sort());
    assert.equal(after.serviceActive, after.active);
    const total = Object.values(before.recordsByKey).reduce((a, b) => a + b, 0);
    assert.deepEqual(after.recordsByKey, { [after.active]: total });
    const back = await api.get('notes', id, token);
    assert.equal(back.status, 200, back.text);
    assert.deepEqual((back.json as { data: unknown }).data, body);
    const fresh = await api.post('notes', { title: 'after the rotation' }, token);
    assert.equal(fresh.status, 201, fresh.text);
    assert.equal((await keyStatus()).recordsByKey[after.active], total + 1);
  });
});
