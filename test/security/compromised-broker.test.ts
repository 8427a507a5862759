import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

/**
 * An attacker who owns the broker after it has carried traffic: what is on its disk, what
 * it can write, what Redis kept, and what its credentials open at core.
 */
describe('a compromised broker', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;
  const canary = `canary-${randomBytes(12).toString('hex')}`;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
    // Load: 300 records carrying the canary, 20 at a time, plus refused ones carrying it too.
    for (let i = 0; i < 15; i++) {
      const batch = await Promise.all(Array.from({ length: 20 }, (_, j) => api.post('notes', { title: `load ${i}-${j}`, body: `${canary} ${i} ${j}` }, token)));
      for (const r of batch) assert.equal(r.status, 201, r.text);
    }
    for (let i = 0; i < 20; i++) assert.equal((await api.post('notes', { title: canary, extra: canary }, token)).status, 422);
  });

  after(async () => {
    await stack?.down();
  });

  it('finds no trace of the traffic on any file of the broker, tmpfs included', async () => {
    const grep = await stack.exec('broker', ['sh', '-c', `grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev '${canary}' / ; echo scanned`]);
    assert.equal(grep.stdout.trim(), 'scanned', `files holding the canary:\n${grep.stdout}`);
    assert.ok(!(await stack.logs('broker')).includes(canary), 'the canary is in the broker log');
  });

  it('finds no Redis dump or append-only file anywhere, and a config that forbids both', async () => {
    const find = await stack.exec('broker', ['sh', '-c', "find / -xdev \\( -name '*.rdb' -o -name 'appendonly*' -o -name '*.aof' \\) 2>/dev/null; find /run/nonstop /tmp \\( -name '*.rdb' -o -name '*.aof' \\) 2>/dev/null; echo searched"]);
    assert.equal(find.stdout.trim(), 'searched');
    const conf = await stack.exec('broker', ['cat', '/run/nonstop/redis/redis.conf']);
    assert.match(conf.stdout, /^save ""$/m);
    assert.match(conf.stdout, /^appendonly no$/m);
    assert.doesNotMatch(conf.stdout, /^user \S+ on >/m, 'a plaintext password in redis.conf');
  });

  it('cannot write its root filesystem anywhere', async () => {
    const res = await stack.exec('broker', ['sh', '-c', 'for d in / /app /etc /usr /var /home /root /opt; do touch $d/.probe 2>/dev/null && echo WROTE $d; done; echo checked']);
    assert.equal(res.stdout.trim(), 'checked');
  });

  it('cannot read a stored record at core without a client token, even with its client certificate', async () => {
    const created = await api.post('notes', { title: 'kept at core' }, token);
    const id = (created.json as { id: string }).id;
    const res = await stack.exec('broker', ['node', '-e', `
      const https = require('https'); const fs = require('fs');
      const req = https.request({ host: 'core', port: 8443, path: '/v1/records/notes/${id}', method: 'GET',
        ca: fs.readFileSync('/etc/nonstop/broker/ca.crt'), cert: fs.readFileSync('/etc/nonstop/broker/client.crt'), key: fs.readFileSync('/etc/nonstop/broker/client.key'),
        headers: { authorization: 'Bearer nst_${'0'.repeat(16)}_${'B'.repeat(43)}' } }, (r) => { let b=''; r.on('data', (d) => b += d); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); });
      req.end();
    `]);
    const out = JSON.parse(res.stdout) as { status: number; body: string };
    assert.equal(out.status, 401);
    assert.ok(!out.body.includes('kept at core'));
  });
});
