import assert from 'node:assert/strict';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import { lookupName, startListener, tcpProbe, type Runner } from '../support/stack/net-probe';
import type { Stack } from '../support/stack/stack';
import { countRecords } from '../support/stack/core-db';
import { waitFor } from '../support/wait';

/**
 * An attacker who owns the gateway: commands run inside the gateway container as its own
 * user, with everything the gateway has — its files, its Redis credentials, its tunnels.
 * It must not reach core, must not do anything with Redis beyond queueing requests and
 * reading its own replies, and must not be able to hurt the broker or core with garbage.
 */
describe('a compromised gateway', function () {
  this.timeout(600_000);
  let stack: Stack;

  /** Runs JavaScript inside the gateway with the gateway's node_modules. */
  const inGateway = async (code: string): Promise<unknown> => {
    const res = await stack.exec('gateway', ['node', '-e', code], { timeoutMs: 120_000 });
    if (res.exitCode !== 0) throw new Error(`gateway script failed: ${res.stderr}`);
    return JSON.parse(res.stdout) as unknown;
  };

  /** Opens the queue through the gateway's own tunnel listener with the gateway's own password. */
  const redisPreamble = `
    const fs = require('fs');
    const { Redis } = require('/app/node_modules/ioredis');
    const listening = fs.readFileSync('/proc/net/tcp', 'utf8').split('\\n').slice(1)
      .map((l) => l.trim().split(/\\s+/)).filter((f) => f[3] === '0A' && f[1] && f[1].startsWith('0100007F:'))
      .map((f) => parseInt(f[1].split(':')[1], 16)).filter((p) => p !== 8080 && p !== 9464);
    const password = fs.readFileSync('/var/lib/nonstop/queue.password', 'utf8').trim();
    const r = new Redis({ host: '127.0.0.1', port: listening[0], username: 'gateway-gw1', password, enableReadyCheck: false, disableClientInfo: true, maxRetriesPerRequest: 0, lazyConnect: true });
    r.on('error', () => {});
  `;

  before(async () => {
    stack = await upStack();
    const api = await ApiClient.forStack(stack);
    const token = await createToken(stack, ['notes']);
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
  });

  after(async () => {
    await stack?.down();
  });

  it('holds no key, certificate or password that opens a tier behind it', async () => {
    const res = await stack.exec('gateway', ['sh', '-c', 'find /var/lib/nonstop /etc/nonstop /app -type f 2>/dev/null | grep -v node_modules | sort']);
    const files = res.stdout.trim().split('\n');
    assert.deepEqual(files.filter((f) => f.startsWith('/var/lib/nonstop')).sort(), [
      '/var/lib/nonstop/authorized_keys',
      '/var/lib/nonstop/knock.secret',
      '/var/lib/nonstop/queue.password',
      '/var/lib/nonstop/ssh/ssh_host_ed25519_key',
      '/var/lib/nonstop/tls/server.crt',
      '/var/lib/nonstop/tls/server.key',
    ]);
    // A PEM private key block with a body, in any text file (code that merely names the
    // marker does not count).
    const marker = '-----BEGIN [A-Z ]*PRIVATE KEY-----';
    const grep = await stack.exec('gateway', ['sh', '-c', `grep -rlI --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -- '${marker}' / 2>/dev/null | while read -r f; do grep -A1 -- '${marker}' "$f" | grep -qE '^[A-Za-z0-9+/]{60}' && echo "$f"; done; true`], { timeoutMs: 180_000 });
    // Its own host key and TLS key only: no broker key, no client certificate, no CA key.
    assert.deepEqual(grep.stdout.trim().split('\n').sort(), ['/var/lib/nonstop/ssh/ssh_host_ed25519_key', '/var/lib/nonstop/tls/server.key']);
  });

  it('has no route to core, while it reaches a listener on its own network', async () => {
    const gateway: Runner = (cmd) => stack.exec('gateway', cmd);
    const coreIp = await stack.ip('core', 'private');
    // Positive controls with the same probes from the same container: a name on the edge
    // network resolves, and an open port on it connects.
    const peer = await stack.probe('edge');
    await startListener(stack.docker, peer, 9000);
    const peerIp = (await peer.inspect()).NetworkSettings.Networks[stack.name('edge')]!.IPAddress;
    assert.deepEqual(await lookupName(gateway, 'broker'), { outcome: 'resolved', address: await stack.ip('broker', 'edge') });
    assert.equal(await tcpProbe(gateway, peerIp, 9000), 'connected');
    // No answer at all: neither a connection nor a reset from core's address.
    const core = await tcpProbe(gateway, coreIp, 8443);
    assert.ok(core === 'timeout' || core === 'unreachable', `core ${coreIp}:8443 answered the gateway: ${core}`);
    assert.equal((await lookupName(gateway, 'core')).outcome, 'not-found', 'the name core resolves for the gateway');
  });

  it("is denied every dangerous Redis command with its own credentials, and other gateways' keys", async () => {
    const attempts: [string, ...string[]][] = [
      ['config', 'get', '*'], ['config', 'set', 'dir', '/tmp'], ['flushall'], ['flushdb'], ['keys', '*'], ['scan', '0'],
      ['eval', 'return 1', '0'], ['script', 'load', 'return 1'], ['function', 'list'], ['module', 'list'], ['debug', 'sleep', '0'],
      ['replicaof', '127.0.0.1', '1'], ['slaveof', 'no', 'one'], ['save'], ['bgsave'], ['shutdown'], ['client', 'list'], ['client', 'kill', 'type', 'normal'],
      ['migrate', '127.0.0.1', '1', 'k', '0', '1'], ['acl', 'list'], ['info'], ['monitor'],
      ['xrange', 'nonstop:v2:gw:gw1:req', '-', '+'], ['xreadgroup', 'GROUP', 'brokers', 'x', 'STREAMS', 'nonstop:v2:gw:gw1:req', '>'],
      ['getdel', 'nonstop:v2:gw:gw1:req:x'], ['subscribe', 'nonstop:v2:gw:gw2:replies'], ['xadd', 'nonstop:v2:gw:gw2:req', '*', 'e', 'x'],
      ['get', 'nonstop:v2:dead'], ['xrange', 'nonstop:v2:dead', '-', '+'], ['set', 'x', 'y'], ['publish', 'nonstop:v2:gw:gw1:replies', 'x'],
    ];
    const results = (await inGateway(`${redisPreamble}
      (async () => {
        await r.connect();
        const out = [];
        for (const a of ${JSON.stringify(attempts)}) {
          try { await r.call(...a); out.push([a.join(' '), 'ALLOWED']); } catch (e) { out.push([a.join(' '), e.message]); }
        }
        const ping = await r.ping();
        console.log(JSON.stringify({ out, ping }));
        r.disconnect();
      })();
    `)) as { out: [string, string][]; ping: string };
    assert.equal(results.ping, 'PONG', 'the gateway could not even reach its queue');
    for (const [cmd, outcome] of results.out) {
      assert.match(outcome, /NOPERM|not allowed|unknown command/i, `${cmd} was not denied: ${outcome}`);
    }
  });

  it('cannot crash the broker or store anything at core by flooding the queue with garbage', async () => {
    const before = { broker: (await stack.inspect('broker')).RestartCount, records: await countRecords(stack) };
    const sent = (await inGateway(`${redisPreamble}
      (async () => {
        await r.connect();
        const garbage = ['not json', '{"v":2}', '{"v":1,"id":"x"}', JSON.stringify({ v: 2, id: '00000000-0000-4000-8000-000000000000', gw: 'gw2', budgetMs: 10000, method: 'POST', collection: 'notes', token: 'nst_x', body: '{}' }), 'x'.repeat(3 * 1024 * 1024)];
        let n = 0;
        for (let i = 0; i < 1000; i++) { await r.xadd('nonstop:v2:gw:gw1:req', '*', 'e', garbage[i % garbage.length]); n++; }
        await r.xadd('nonstop:v2:gw:gw1:req', '*', 'nofield', 'x'); n++;
        console.log(JSON.stringify({ n }));
        r.disconnect();
      })();
    `)) as { n: number };
    assert.equal(sent.n, 1001);
    const poison = await waitFor('the broker to dead-letter the garbage', async () => {
      const m = await stack.exec('broker', ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => console.log(t))"]);
      const total = [...m.stdout.matchAll(/^nonstop_broker_poison_total\{[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
      return total >= 1001 ? total : undefined;
    }, 120_000, 500);
    assert.ok(poison >= 1001);
    assert.equal((await stack.inspect('broker')).RestartCount, before.broker);
    assert.equal((await stack.inspect('broker')).State.Health?.Status, 'healthy');
    assert.equal(await countRecords(stack), before.records);
  });
});
