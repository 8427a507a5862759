import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { countRecords } from '../../support/stack/core-db';
import { waitFor } from '../../support/wait';

describe('core through the whole chain', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
  });

  after(async () => {
    await stack?.down();
  });

  const ready = async (token: string) =>
    waitFor('the chain', async () => {
      const res = await api.post('notes', { title: 'probe' }, token);
      return res.status === 201 ? res : undefined;
    }, 60_000, 250);

  it('refuses revoked, expired, wrong-collection and wrong-scope tokens with 401/403 and stores nothing', async () => {
    const good = await createToken(stack, ['notes']);
    await ready(good);
    const expiring = await createToken(stack, ['notes'], 'read,write', ['--expires-in', '1s']);
    const revoked = await createToken(stack, ['notes']);
    const list = await stack.exec('core', ['nonstop-admin', 'token', 'list']);
    const revokedId = /^nst_([0-9a-f]{16})_/.exec(revoked)![1]!;
    assert.ok(list.stdout.includes(revokedId));
    assert.equal((await stack.exec('core', ['nonstop-admin', 'token', 'revoke', revokedId])).exitCode, 0);
    const otherCollection = await createToken(stack, ['orders']);
    const readOnly = await createToken(stack, ['notes'], 'read');
    await sleep(1500);
    const cases: [string, string, number][] = [
      ['revoked', revoked, 401],
      ['expired', expiring, 401],
      ['for another collection', otherCollection, 403],
      ['read-only, writing', readOnly, 403],
      ['made up', `nst_${'0'.repeat(16)}_${'A'.repeat(43)}`, 401],
    ];
    for (const [what, token, status] of cases) {
      const res = await api.post('notes', { title: `written with a ${what} token` }, token);
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.equal((res.json as { error: { code: string } }).error.code, status === 401 ? 'unauthenticated' : 'forbidden');
    }
    assert.equal(await countRecords(stack, { 'data.title': { $regex: '^written with' } }), 0);
  });

  it('keeps every acknowledged record after the core container is killed', async () => {
    const token = await createToken(stack, ['notes']);
    await ready(token);
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await api.post('notes', { title: `acknowledged ${i}` }, token);
      assert.equal(res.status, 201, res.text);
      ids.push((res.json as { id: string }).id);
    }
    await stack.container('core').kill({ signal: 'SIGKILL' });
    await stack.container('core').start();
    await stack.waitHealthy('core');
    for (const [i, id] of ids.entries()) {
      const res = await waitFor(`record ${i} after the kill`, async () => {
        const r = await api.get('notes', id, token);
        return r.status === 200 ? r : undefined;
      }, 60_000, 500);
      assert.equal((res.json as { data: { title: string } }).data.title, `acknowledged ${i}`);
    }
  });
});
