import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

/**
 * From one exec in the broker (as `user`, or the image's user), creates and removes a new
 * file in each directory and reports "written" or the error code; with the mount options
 * of each mount point from /proc/mounts (the last entry for a path is the one in effect).
 * The "written" answers are the positive control: this same exec can write somewhere.
 */
async function writeProbe(stack: Stack, dirs: string[], user?: string): Promise<{ uid: number; results: Record<string, string>; mounts: Record<string, string[]> }> {
  const res = await stack.exec('broker', ['node', '-e', `
    const fs = require('fs'); const path = require('path');
    const results = {};
    for (const dir of JSON.parse(process.argv[1])) {
      const file = path.join(dir, '.write-probe-' + process.pid);
      try { fs.closeSync(fs.openSync(file, 'wx')); fs.unlinkSync(file); results[dir] = 'written'; }
      catch (e) { results[dir] = e.code; }
    }
    const mounts = {};
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').trim().split('\\n')) { const f = line.split(' '); mounts[f[1]] = f[3].split(','); }
    process.stdout.write(JSON.stringify({ uid: process.getuid(), results, mounts }));
  `, JSON.stringify(dirs)], user ? { user } : {});
  if (res.exitCode !== 0) throw new Error(`write probe in the broker exited ${res.exitCode}: ${res.stderr}`);
  return JSON.parse(res.stdout) as { uid: number; results: Record<string, string>; mounts: Record<string, string[]> };
}

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

  it('cannot write its root filesystem anywhere, as its own user or as root, because it is mounted read-only', async () => {
    const rootfs = ['/', '/app', '/etc', '/usr', '/var', '/home', '/root', '/opt'];
    // EROFS, not EACCES: the kernel refuses a create on a read-only mount before it looks
    // at permissions, so only a read-only mount gives this answer, for root as for anyone.
    // Root here owns these directories, so on a writable mount its writes would succeed.
    // /root is 0700: the service user is stopped at the path lookup (EACCES) before any
    // create, so it tells nothing about the mount; root covers it below.
    const userDirs = rootfs.filter((d) => d !== '/root');
    const asUser = await writeProbe(stack, [...userDirs, '/run/nonstop']);
    assert.deepEqual(asUser.results, { ...Object.fromEntries(userDirs.map((d) => [d, 'EROFS'])), '/run/nonstop': 'written' });
    const asRoot = await writeProbe(stack, [...rootfs, '/dev/shm'], '0');
    assert.equal(asRoot.uid, 0);
    assert.deepEqual(asRoot.results, { ...Object.fromEntries(rootfs.map((d) => [d, 'EROFS'])), '/dev/shm': 'written' });
    // The mount table agrees: / is mounted ro, the tmpfs the service writes to rw.
    assert.equal(asRoot.mounts['/']?.[0], 'ro', `/ mounted ${asRoot.mounts['/']?.join(',')}`);
    assert.equal(asUser.mounts['/run/nonstop']?.[0], 'rw', `/run/nonstop mounted ${asUser.mounts['/run/nonstop']?.join(',')}`);
  });

  for (const service of ['broker', 'core'] as const) {
    it(`${service}: can neither swap its memory to a disk nor dump core, in the running container`, async () => {
      // Read as the container's own process sees them: its cgroup's limits (v1 here) and its
      // rlimits. memory.limit_in_bytes equal to the compose mem_limit is the positive
      // control that these files are the container's and were read.
      const limits = await stack.exec(service, ['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; cat /proc/1/limits']);
      assert.equal(limits.exitCode, 0, limits.stderr);
      const [memory, memsw] = limits.stdout.split('\n').slice(0, 2).map(Number);
      assert.equal(memory, stack.spec.services[service]!.memoryBytes, 'the memory limit is the one compose sets');
      assert.equal(memsw, memory, 'memory + swap equals memory: nothing can be swapped out');
      assert.match(limits.stdout, /^Max core file size\s+0\s+0\s+bytes\s*$/m, 'PID 1 (and every process it starts) may not dump core');
    });
  }

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
