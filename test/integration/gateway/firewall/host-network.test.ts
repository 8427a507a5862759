import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Firewall } from '../../../../services/gateway/firewall/nftables';
import { knockPortRanges, type FirewallScope, type RulesetOptions } from '../../../../services/gateway/firewall/ruleset';
import { KnockSniffer } from '../../../../services/gateway/knock/sniffer';
import { KnockTracker } from '../../../../services/gateway/knock/tracker';
import { requireBinary } from '../../../support/binaries';
import { silentLogger } from '../../../support/logger';
import { NamespacePair, type ProbeResult } from '../../../support/netns-pair';
import { Procs, writeKeyPair, type Proc } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/**
 * The gateway's firewall on a host it shares (host networking), with the real nftables,
 * OpenSSH and tcpdump, in a pair of network namespaces this test creates: `host` runs the
 * host's own sshd on 22, two services of its own (8080 open, 8081 dropped by the host
 * operator's own `inet host_filter` table) and a stand-in for the gateway's SSH server on
 * 2222; `peer` is a client on the internet. In `ports` scope the gateway's table must
 * filter its own ports (the SSH port and the knock ports) and change nothing else; in
 * `namespace` scope — right for a container's own namespace — the same host is locked out,
 * which is why the scope exists.
 */
describe('Firewall on a shared (host) network namespace', function () {
  this.timeout(120_000);
  const SSH_PORT = 2222;
  const KNOCK: RulesetOptions['knockPorts'] = [[40000, 40999]];
  const OPERATOR_TABLE = [
    'table inet host_filter {',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    '    tcp dport 22 counter accept',
    '    tcp dport 8081 drop',
    '  }',
    '}',
    '',
  ].join('\n');

  let pair: NamespacePair;
  let tmp: ReturnType<typeof tempDir>;
  let nft: string;
  const procs = new Procs();
  let rulesetBefore: string;

  const options = (scope: FirewallScope, knockPorts = KNOCK): RulesetOptions => ({ scope, publicPorts: [80, 443], sshPort: SSH_PORT, knockPorts, maxOpenWindows: 1024 });
  const hostNft = (...args: string[]): string => {
    const r = pair.runSync(pair.host, ['nft', ...args]);
    assert.equal(r.status, 0, `nft ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  /** The whole ruleset without counters or set contents: what a table's definition is. */
  const ruleset = (): string => hostNft('-s', 'list', 'ruleset');
  const operatorCounter22 = (): number => Number(/tcp dport 22 counter packets (\d+)/.exec(hostNft('list', 'table', 'inet', 'host_filter'))?.[1] ?? NaN);
  const v4 = (...ports: number[]): { host: string; port: number }[] => ports.map((port) => ({ host: pair.hostV4, port }));
  const v6 = (...ports: number[]): { host: string; port: number }[] => ports.map((port) => ({ host: pair.hostV6, port }));
  /** Probe results as "host port outcome" lines, so a failure shows every port at once. */
  const seen = (results: ProbeResult[]): string[] => results.map((r) => `${r.host} ${r.port} ${r.outcome}`);
  const expect = (targets: { host: string; port: number }[], outcome: ProbeResult['outcome']): string[] => targets.map((t) => `${t.host} ${t.port} ${outcome}`);

  before(async () => {
    const sshd = requireBinary('openssh-server', '/usr/sbin/sshd');
    requireBinary('nftables', '/usr/sbin/nft');
    pair = NamespacePair.create();
    tmp = tempDir();
    nft = pair.wrapper(tmp.dir, pair.host, 'nft');

    const opTable = join(tmp.dir, 'host_filter.nft');
    writeFileSync(opTable, OPERATOR_TABLE);
    hostNft('-f', opTable);

    // The host's own sshd, on every address, as a real host runs it.
    const hostKey = writeKeyPair(tmp.dir, 'host_key');
    const sshdConfig = join(tmp.dir, 'sshd_config');
    writeFileSync(
      sshdConfig,
      [
        'Port 22',
        'ListenAddress 0.0.0.0',
        'ListenAddress ::',
        `HostKey ${hostKey.privatePath}`,
        `PidFile ${join(tmp.dir, 'sshd.pid')}`,
        'AuthorizedKeysFile none',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    // sshd refuses to start without its privilege separation directory.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const sshdProc = procs.start('ip', ['netns', 'exec', pair.host, sshd, '-D', '-e', '-f', sshdConfig], { tree: true });
    const services = procs.start('ip', ['netns', 'exec', pair.host, process.execPath, '-e', SERVICE_SCRIPT, JSON.stringify([SSH_PORT, 8080, 8081])]);
    await services.waitOutput(/listening/);
    await waitFor(`the host's sshd to greet the peer (sshd output: ${sshdProc.output})`, async () => (await pair.probe(v4(22), 1000))[0]?.banner.startsWith('SSH-2.0-OpenSSH'), 15_000, 200);
    rulesetBefore = ruleset();
    assert.match(rulesetBefore, /table inet host_filter/);
  });

  afterEach(async () => {
    // Whatever a test left loaded, the next one starts from the operator's ruleset alone.
    if (pair) await new Firewall(options('ports'), nft).remove();
  });

  after(async () => {
    await procs.stopAll();
    pair?.destroy();
    tmp?.cleanup();
  });

  it('answers from the peer as the host serves it while no gateway table is loaded (the probe tells the three outcomes apart)', async () => {
    const results = await pair.probe([...v4(22, 8080, SSH_PORT, 8081, 40000, 39999), ...v6(22)]);
    assert.deepEqual(seen(results), [
      ...expect(v4(22, 8080, SSH_PORT), 'open'),
      ...expect(v4(8081), 'filtered'),
      ...expect(v4(40000, 39999), 'refused'),
      ...expect(v6(22), 'open'),
    ]);
    assert.match(results[0]!.banner, /^SSH-2\.0-OpenSSH/);
  });

  it('in ports scope filters the SSH port and the knock range, and leaves the host\'s sshd, its other services and its own table as they were', async () => {
    const fw = new Firewall(options('ports'), nft);
    const counterBefore = operatorCounter22();
    await fw.load();

    const results = await pair.probe([...v4(22, 8080, 8081, 39999, 41000, SSH_PORT, 40000, 40500, 40999), ...v6(22, SSH_PORT, 40000)]);
    assert.deepEqual(seen(results), [
      ...expect(v4(22, 8080), 'open'),
      // The operator's own drop still applies: our accept does not override it.
      ...expect(v4(8081), 'filtered'),
      // Closed ports beside the knock range still answer with an RST: their verdict is unchanged.
      ...expect(v4(39999, 41000), 'refused'),
      ...expect(v4(SSH_PORT, 40000, 40500, 40999), 'filtered'),
      ...expect(v6(22), 'open'),
      ...expect(v6(SSH_PORT, 40000), 'filtered'),
    ]);
    assert.match(results[0]!.banner, /^SSH-2\.0-OpenSSH/);
    // Packets to 22 went through the gateway's chain and on through the operator's.
    assert.ok(operatorCounter22() > counterBefore, `operator's counter on 22: ${counterBefore} → ${operatorCounter22()}`);
    assert.equal(ruleset().replace(/table inet nonstop_gateway \{[\s\S]*?\n\}\n?/, ''), rulesetBefore, 'the operator\'s table changed');

    // A window opens the SSH port for that address (and family) only; the knock range stays filtered.
    await fw.allow(pair.peerV4, 60_000);
    assert.deepEqual(seen(await pair.probe([...v4(SSH_PORT, 40000), ...v6(SSH_PORT)])), [
      ...expect(v4(SSH_PORT), 'open'),
      ...expect(v4(40000), 'filtered'),
      ...expect(v6(SSH_PORT), 'filtered'),
    ]);
    await fw.allow(pair.peerV6, 60_000);
    assert.deepEqual(seen(await pair.probe(v6(SSH_PORT))), expect(v6(SSH_PORT), 'open'));

    // Stopping removes exactly our table: the ruleset is the operator's again, byte for byte,
    // and every port answers as it did before the gateway came.
    await fw.remove();
    assert.equal(ruleset(), rulesetBefore);
    assert.deepEqual(seen(await pair.probe(v4(22, SSH_PORT, 40000))), [...expect(v4(22, SSH_PORT), 'open'), ...expect(v4(40000), 'refused')]);
  });

  it('in ports scope keeps an established session to the SSH port after its window closes, and admits no new one', async () => {
    const fw = new Firewall(options('ports'), nft);
    await fw.load();
    await fw.allow(pair.peerV4, 60_000);
    const client: Proc = procs.start('ip', ['netns', 'exec', pair.peer, process.execPath, '-e', CLIENT_SCRIPT, pair.hostV4, String(SSH_PORT)]);
    await client.waitOutput(new RegExp(`port ${SSH_PORT}`));
    // The gateway closes the window as soon as a connection is admitted.
    await fw.revoke(pair.peerV4);
    assert.deepEqual(seen(await pair.probe(v4(SSH_PORT))), expect(v4(SSH_PORT), 'filtered'));
    client.child.stdin?.write('still-here\n');
    await client.waitOutput(/echo still-here/);
    await client.stop();
  });

  it('in ports scope still lets the sniffer see knock SYNs it drops, and a knock from the peer opens the SSH port for it', async () => {
    const spec = { mode: 'static' as const, ports: [7000, 8000, 9000] };
    const fw = new Firewall(options('ports', knockPortRanges(spec)), nft);
    await fw.load();
    const tracker = new KnockTracker({ spec, stepTimeoutMs: 5000, sequenceTimeoutMs: 15_000, maxSources: 1024 });
    const sniffer = new KnockSniffer(tracker, { tcpdump: pair.wrapper(tmp.dir, pair.host, requireBinary('tcpdump', '/usr/bin/tcpdump', '/usr/sbin/tcpdump')), device: 'any', bufferKiB: 1024, sweepIntervalMs: 1000 }, silentLogger());
    const opened: Promise<string>[] = [];
    sniffer.on('outcome', (outcome, src) => {
      if (outcome === 'opened') opened.push(fw.allow(src, 60_000).then(() => src));
    });
    await sniffer.start();
    try {
      assert.deepEqual(seen(await pair.probe(v4(SSH_PORT))), expect(v4(SSH_PORT), 'filtered'));
      const knock = await pair.run(pair.peer, ['knock', '-d', '100', pair.hostV4, '7000', '8000', '9000']);
      assert.equal(knock.status, 0, knock.stderr);
      await waitFor('the knock to open a window', () => opened.length > 0, 10_000, 50);
      assert.deepEqual(await Promise.all(opened), [pair.peerV4]);
      assert.deepEqual(seen(await pair.probe(v4(SSH_PORT, 7000, 8000, 9000))), [...expect(v4(SSH_PORT), 'open'), ...expect(v4(7000, 8000, 9000), 'filtered')]);
    } finally {
      sniffer.stop();
    }
  });

  it('in namespace scope locks the same host out: its sshd on 22 and its other services no longer answer (why ports scope exists)', async () => {
    const fw = new Firewall(options('namespace'), nft);
    await fw.load();
    assert.deepEqual(seen(await pair.probe([...v4(22, 8080, 39999), ...v6(22)])), [...expect(v4(22, 8080, 39999), 'filtered'), ...expect(v6(22), 'filtered')]);
    await fw.remove();
    assert.equal(ruleset(), rulesetBefore);
    assert.deepEqual(seen(await pair.probe(v4(22))), expect(v4(22), 'open'));
  });
});

/** Services of the host: on each port, greets with "port <n>" and echoes every line back. */
const SERVICE_SCRIPT = `
const net = require('node:net');
const ports = JSON.parse(process.argv[1]);
let pending = ports.length;
for (const port of ports) {
  net.createServer((s) => {
    s.on('error', () => {});
    s.write('port ' + port + '\\n');
    s.on('data', (b) => s.write('echo ' + b.toString()));
  }).listen({ port, host: '::', ipv6Only: false }, () => { if (--pending === 0) console.log('listening'); });
}
`;

/** A long-lived client: prints what the server sends and sends what it reads on stdin. */
const CLIENT_SCRIPT = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('data', (b) => process.stdout.write(b));
s.on('error', (err) => { console.error(err.message); process.exit(1); });
process.stdin.on('data', (b) => s.write(b));
`;
