import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ApiClient, createToken } from '../../support/stack/api-client';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

describe('the broker container', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;

  const postWhenReady = (record: unknown) =>
    waitFor('the chain to accept a record', async () => {
      const res = await api.post('notes', record, token);
      return res.status === 201 ? res : undefined;
    }, 60_000, 250);

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    await postWhenReady({ title: 'warm-up' });
  });

  after(async () => {
    await stack?.down();
  });

  it('has a read-only root filesystem and no volume that could keep data', async () => {
    const info = await stack.inspect('broker');
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    const writable = info.Mounts.filter((m) => m.RW);
    assert.deepEqual(writable, [], `writable mounts: ${JSON.stringify(writable)}`);
    const touch = await stack.exec('broker', ['sh', '-c', 'echo x > /app/x; echo x > /var/x; echo x > /etc/x']);
    assert.notEqual(touch.exitCode, 0);
    assert.match(touch.stderr, /Read-only file system/);
  });

  it('keeps no trace of a payload in its logs or on any file after it passed through', async () => {
    const canary = `canary-${randomBytes(12).toString('hex')}`;
    const ok = await postWhenReady({ title: 'carrying a canary', body: canary });
    const read = await api.get('notes', (ok.json as { id: string }).id, token);
    assert.ok(read.text.includes(canary), 'the canary did not even make it to core');
    // A refused request carrying the canary too: refusals must not echo it either.
    const refused = await api.post('notes', { title: 'x', [`$${canary}`]: canary }, token);
    assert.equal(refused.status, 422);
    assert.ok(!refused.text.includes(canary), 'the refusal echoed the payload');
    const logs = await stack.logs('broker');
    assert.ok(logs.length > 0);
    assert.ok(!logs.includes(canary), 'the canary is in the broker log');
    assert.ok(!(await stack.logs('gateway')).includes(canary), 'the canary is in the gateway log');
    const grep = await stack.exec('broker', ['sh', '-c', `grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev '${canary}' / ; echo done`]);
    assert.equal(grep.stdout.trim(), 'done', `files holding the canary: ${grep.stdout}`);
  });

  it('comes back by itself after the gateway is killed and restarted, and traffic flows again', async () => {
    // Counted from here: a tunnel the broker set up again earlier (at start-up) is not this reconnection.
    const tunnelsUp = async (): Promise<number> => ((await stack.logs('broker')).match(/"message":"tunnel up"/g) ?? []).length;
    const tunnelsBefore = await tunnelsUp();
    await stack.container('gateway').kill();
    await stack.container('gateway').start();
    await stack.waitHealthy('gateway');
    // A restarted container gets new random host ports.
    api = await ApiClient.forStack(stack);
    const res = await postWhenReady({ title: 'after the gateway restart' });
    assert.equal(res.status, 201);
    assert.ok((await tunnelsUp()) > tunnelsBefore, 'the broker did not reconnect');
  });
});
