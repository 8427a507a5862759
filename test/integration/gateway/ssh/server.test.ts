import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client, type KeyboardInteractiveAuthMethod, type PasswordAuthMethod } from 'ssh2';
import { WindowGrants } from '../../../../services/gateway/knock/window-grants';
import { parseAuthorizedKeys } from '../../../../services/gateway/ssh/authorized-keys';
import { memoryLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import {
  counterValue,
  probeBanner,
  Procs,
  redisCommand,
  secretChunks,
  socks5Connect,
  startGateway,
  startRedis,
  startSsh,
  writeKeyPair,
  type GatewayFixture,
  type GatewayFixtureOptions,
  type KeyFiles,
  type RedisFixture,
} from '../../../support/ssh-fixtures';
import { requireBinary } from '../../../support/binaries';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';
import { loopbackPortOf } from '../../../support/tunnel-bridge';

describe('GatewaySshServer with OpenSSH as the broker', function () {
  this.timeout(20_000);

  let tmp: ReturnType<typeof tempDir>;
  const shared = new Procs();
  let redis: RedisFixture;
  let hostKey: KeyFiles;
  let brokerA: KeyFiles;
  let brokerB: KeyFiles;
  let stranger: KeyFiles;
  let strangers: KeyFiles[];
  let queuePort: number;

  let procs: Procs;
  let logs: ReturnType<typeof memoryLogger>;
  let gw: GatewayFixture | undefined;

  before(async () => {
    tmp = tempDir('nonstop-ssh-server-');
    hostKey = writeKeyPair(tmp.dir, 'host_ed25519', 'gateway-host');
    brokerA = writeKeyPair(tmp.dir, 'broker_a', 'broker-a');
    brokerB = writeKeyPair(tmp.dir, 'broker_b', 'broker-b');
    stranger = writeKeyPair(tmp.dir, 'stranger', 'stranger');
    strangers = [writeKeyPair(tmp.dir, 'stranger_2', 'stranger-2'), writeKeyPair(tmp.dir, 'stranger_3', 'stranger-3')];
    redis = await startRedis(shared, tmp.dir);
    // Nothing listens there: the gateway binds its own ephemeral port per tunnel.
    queuePort = await freePort();
  });

  after(async () => {
    await shared.stopAll();
    tmp.cleanup();
  });

  beforeEach(() => {
    procs = new Procs();
    logs = memoryLogger();
  });

  afterEach(async () => {
    await procs.stopAll();
    await gw?.close();
    gw = undefined;
  });

  async function gateway(o: Partial<GatewayFixtureOptions> = {}): Promise<GatewayFixture> {
    gw = await startGateway({ hostKey, authorizedKeys: `${brokerA.publicKey}\n${brokerB.publicKey}\n`, queuePort, log: logs.log, ...o });
    return gw;
  }

  const validForward = (): string => `127.0.0.1:${queuePort}:127.0.0.1:${redis.port}`;

  function refusals(kind: string): Record<string, unknown>[] {
    return logs.lines.filter((l) => l.message === 'ssh request refused' && l.kind === kind);
  }

  /** Starts `ssh -N -R <valid>` plus `extra` and resolves with the tunnel the server announces. */
  async function openTunnel(g: GatewayFixture, key: KeyFiles, extra: string[] = []) {
    const before = g.tunnels.length;
    const ssh = startSsh(procs, key, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), ...extra, '127.0.0.1']);
    const tunnel = await waitFor(`a tunnel (ssh output: ${ssh.output})`, () => {
      if (!ssh.running) throw new Error(`ssh exited: ${ssh.output}`);
      return g.tunnels[before];
    });
    return { ssh, tunnel };
  }

  describe('the queue port forward', () => {
    it('carries a connection to the redis-server behind the broker for -R 127.0.0.1:<queue port>', async () => {
      const g = await gateway();
      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(tunnel.peer.name, 'broker-a');
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });

    it('accepts -R <queue port> without a bind address (OpenSSH sends "localhost")', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${queuePort}:127.0.0.1:${redis.port}`, '127.0.0.1']);
      const tunnel = await waitFor(`a tunnel (ssh output: ${ssh.output})`, () => g.tunnels[0]);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.equal(await counterValue(g.metrics.sshRefused), 0);
    });
  });

  describe('everything else a client may ask for', () => {
    it('refuses -R of another port, and ssh with ExitOnForwardFailure exits non-zero', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${queuePort + 1}:127.0.0.1:${redis.port}`, '127.0.0.1']);
      const exit = await ssh.waitExit();
      assert.notEqual(exit.code, 0);
      assert.match(ssh.output, /remote port forwarding failed/);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'tcpip-forward' }), 1);
      assert.match(String(refusals('tcpip-forward')[0]?.why), /not the queue port/);
    });

    it('refuses -R 0.0.0.0:<queue port> (not loopback)', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `0.0.0.0:${queuePort}:127.0.0.1:${redis.port}`, '127.0.0.1']);
      const exit = await ssh.waitExit();
      assert.notEqual(exit.code, 0);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'tcpip-forward' }), 1);
      const [line] = refusals('tcpip-forward');
      assert.equal(line?.bindAddr, '0.0.0.0');
      assert.match(String(line?.why), /not loopback/);
    });

    it('refuses a second -R of the queue port on the same connection and keeps the first', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-R', validForward(), '-R', `localhost:${queuePort}:127.0.0.1:${redis.port}`, '127.0.0.1']);
      await ssh.waitOutput(/remote port forwarding failed for listen port/);
      await waitFor('the first tunnel', () => g.tunnels[0]);
      assert.equal(g.tunnels.length, 1);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'tcpip-forward' }), 1);
      assert.equal(refusals('tcpip-forward')[0]?.why, 'one forward per connection');
      assert.equal(await redisCommand(await loopbackPortOf(g.tunnels[0]!), ['PING']), '+PONG');
      assert.ok(ssh.running, 'the connection itself stays up');
    });

    it('refuses -L: a connection through the local forward does not reach its target', async () => {
      const g = await gateway();
      const localPort = await freePort();
      const { ssh } = await openTunnel(g, brokerA, ['-L', `127.0.0.1:${localPort}:127.0.0.1:${redis.port}`]);
      // The target is reachable from the gateway's host: only the refusal keeps it out.
      await assert.rejects(redisCommand(localPort, ['PING']), /closed the connection without a reply|ECONNRESET/);
      await waitFor('the direct-tcpip refusal to be counted', async () => (await counterValue(g.metrics.sshRefused, { kind: 'direct-tcpip' })) === 1);
      assert.equal(refusals('direct-tcpip')[0]?.destPort, redis.port);
      assert.ok(ssh.running);
    });

    it('refuses -D: a SOCKS CONNECT through the dynamic forward fails', async () => {
      const g = await gateway();
      const socksPort = await freePort();
      await openTunnel(g, brokerA, ['-D', `127.0.0.1:${socksPort}`]);
      const reply = await socks5Connect(socksPort, redis.port);
      assert.notEqual(reply, 0, 'the proxy must not report a successful CONNECT');
      await waitFor('the direct-tcpip refusal to be counted', async () => (await counterValue(g.metrics.sshRefused, { kind: 'direct-tcpip' })) === 1);
      assert.equal(refusals('direct-tcpip')[0]?.destPort, redis.port);
    });

    it('refuses a shell (ssh -tt)', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['-tt', '127.0.0.1']);
      const exit = await ssh.waitExit();
      assert.equal(exit.code, 255);
      assert.match(ssh.output, /open failed/);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'session' }), 1);
      assert.equal(refusals('session').length, 1);
    });

    it('refuses a command: ssh host echo hi exits 255 without running it', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, ['127.0.0.1', 'echo', 'hi']);
      const exit = await ssh.waitExit();
      assert.equal(exit.code, 255);
      assert.doesNotMatch(ssh.output, /\bhi\b/);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'session' }), 1);
    });

    it('refuses the sftp subsystem', async () => {
      const g = await gateway();
      const sftpBin = requireBinary('openssh-client', '/usr/bin/sftp');
      const sftp = procs.start(
        sftpBin,
        [
          '-F', '/dev/null',
          '-o', 'BatchMode=yes',
          '-o', 'StrictHostKeyChecking=no',
          '-o', 'UserKnownHostsFile=/dev/null',
          '-o', 'IdentitiesOnly=yes',
          '-o', 'IdentityAgent=none',
          '-i', brokerA.privatePath,
          '-P', String(g.port),
          '-b', '-',
          'broker@127.0.0.1',
        ],
        { stdin: 'ls /\n', env: { PATH: process.env.PATH, HOME: process.env.HOME } },
      );
      const exit = await sftp.waitExit();
      assert.notEqual(exit.code, 0);
      assert.doesNotMatch(sftp.output, /sftp> ls/);
      assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'session' }), 1);
    });

    describe('agent forwarding', () => {
      let agent: Server;
      let agentConnections: number;
      let agentPath: string;

      beforeEach(async () => {
        agentConnections = 0;
        agentPath = join(tmp.dir, `agent-${Date.now()}.sock`);
        agent = createServer((s) => {
          agentConnections++;
          s.destroy();
        });
        agent.listen(agentPath);
        await once(agent, 'listening');
      });

      afterEach(async () => {
        await new Promise<void>((resolve) => agent.close(() => resolve()));
      });

      it('opens nothing towards the agent of a client that asks to forward it with a session', async () => {
        const g = await gateway();
        const ssh = startSsh(procs, brokerA, g.port, ['-o', `ForwardAgent=${agentPath}`, '-tt', '127.0.0.1']);
        const exit = await ssh.waitExit();
        assert.equal(exit.code, 255);
        assert.equal(await counterValue(g.metrics.sshRefused, { kind: 'session' }), 1);
        assert.equal(agentConnections, 0);
      });

      it('opens nothing towards the agent of a tunnel-only client that offers it', async () => {
        const g = await gateway();
        const { tunnel } = await openTunnel(g, brokerA, ['-o', `ForwardAgent=${agentPath}`]);
        assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
        assert.equal(agentConnections, 0);
      });
    });
  });

  describe('authentication', () => {
    it('refuses a key that is not authorized', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, stranger, g.port, ['-N', '-R', validForward(), '127.0.0.1']);
      const exit = await ssh.waitExit();
      assert.equal(exit.code, 255);
      assert.match(ssh.output, /Permission denied \(publickey\)/);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshAuthFailures, { method: 'publickey' }), 1);
      const failure = logs.lines.find((l) => l.message === 'ssh authentication failed');
      assert.equal(failure?.fingerprint, stranger.fingerprint);
    });

    it('offers no password method to OpenSSH and refuses password and keyboard-interactive attempts', async () => {
      const g = await gateway();
      const ssh = startSsh(procs, brokerA, g.port, [
        '-o', 'PubkeyAuthentication=no',
        '-o', 'PreferredAuthentications=password,keyboard-interactive',
        '-N', '-R', validForward(), '127.0.0.1',
      ]);
      assert.equal((await ssh.waitExit()).code, 255);
      assert.match(ssh.output, /Permission denied \(publickey\)/);

      // A client that tries them anyway, whatever the server advertised.
      const attempts: [PasswordAuthMethod, KeyboardInteractiveAuthMethod] = [
        { type: 'password', username: 'broker', password: 'hunter2' },
        { type: 'keyboard-interactive', username: 'broker', prompt: (_name, _instructions, _lang, _prompts, finish) => finish(['hunter2']) },
      ];
      const client = new Client();
      const failed = new Promise<Error>((resolve) => {
        client.on('error', resolve);
        client.on('ready', () => resolve(new Error('authenticated')));
      });
      client.connect({
        host: '127.0.0.1',
        port: g.port,
        username: 'broker',
        authHandler: attempts,
      });
      const err = await failed;
      client.end();
      assert.match(err.message, /All configured authentication methods failed/);
      assert.equal(await counterValue(g.metrics.sshAuthFailures, { method: 'password' }), 1);
      assert.equal(await counterValue(g.metrics.sshAuthFailures, { method: 'keyboard-interactive' }), 1);
      assert.equal(g.tunnels.length, 0);
      assert.doesNotMatch(logs.text(), /hunter2/);
    });

    it('closes connections from an address before the banner after maxFailures, even for an authorized key', async () => {
      const g = await gateway({ maxFailures: 3 });
      assert.match((await probeBanner(g.port)).data, /^SSH-2\.0-/, 'greets before any failure');
      for (let i = 0; i < 3; i++) {
        const ssh = startSsh(procs, stranger, g.port, ['-N', '127.0.0.1']);
        assert.equal((await ssh.waitExit()).code, 255);
      }
      assert.equal(await counterValue(g.metrics.sshAuthFailures), 3);

      const probe = await probeBanner(g.port);
      assert.equal(probe.closed, true);
      assert.doesNotMatch(probe.data, /SSH-2\.0/);

      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1']);
      assert.equal((await ssh.waitExit()).code, 255);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'rate_limited' }), 2);
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection refused: too many failed authentications' && l.src === '127.0.0.1'));
    });

    it('cuts off a connection whose key attempts reach maxFailures, before it can offer an authorized key', async () => {
      const g = await gateway({ maxFailures: 3 });
      // OpenSSH offers the identities in order: three unknown ones, then the authorized one.
      const ssh = startSsh(procs, stranger, g.port, [
        '-i', strangers[0]!.privatePath,
        '-i', strangers[1]!.privatePath,
        '-i', brokerA.privatePath,
        '-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1',
      ]);
      assert.equal((await ssh.waitExit()).code, 255);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshAuthFailures), 3);
      assert.ok(!logs.lines.some((l) => l.message === 'broker authenticated'));
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: too many failed authentications'));
    });
  });

  describe('admission', () => {
    it('closes a connection without a knock grant before the banner', async () => {
      const g = await gateway({ admit: () => false });
      const probe = await probeBanner(g.port);
      assert.equal(probe.closed, true);
      assert.equal(probe.data, '');
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'no_knock' }), 1);
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'admitted' }), 0);
    });

    it('admits exactly one connection per WindowGrants grant', async () => {
      const grants = new WindowGrants(16);
      const g = await gateway({ admit: (a) => grants.consume(a) });
      assert.equal((await probeBanner(g.port)).closed, true, 'no grant yet');

      grants.open('127.0.0.1', 30_000);
      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');

      const after = await probeBanner(g.port);
      assert.equal(after.closed, true);
      assert.equal(after.data, '');
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'admitted' }), 1);
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'no_knock' }), 2);
    });
  });

  describe('setup timeout', () => {
    it('disconnects an authenticated client that asks for no forward, and keeps one that did', async () => {
      const g = await gateway({ setupTimeoutMs: 1000 });
      const { ssh: forwarding, tunnel } = await openTunnel(g, brokerB);
      const idle = startSsh(procs, brokerA, g.port, ['-N', '127.0.0.1']);
      const exit = await idle.waitExit();
      assert.notEqual(exit.code, 0);
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: no forward requested in time'));
      assert.ok(forwarding.running, 'the forwarding client outlives the idle one');
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });
  });

  describe('several brokers', () => {
    it('gives each broker its own tunnel and closes only the one whose ssh went away', async () => {
      const g = await gateway();
      const a = await openTunnel(g, brokerA);
      const b = await openTunnel(g, brokerB);
      assert.deepEqual([a.tunnel.peer.name, b.tunnel.peer.name], ['broker-a', 'broker-b']);
      assert.equal(await redisCommand(await loopbackPortOf(a.tunnel), ['PING']), '+PONG');
      assert.equal(await redisCommand(await loopbackPortOf(b.tunnel), ['PING']), '+PONG');

      const closed = once(a.tunnel, 'closed');
      a.ssh.child.kill('SIGKILL');
      await closed;
      await assert.rejects(redisCommand(await loopbackPortOf(a.tunnel), ['PING']));
      assert.equal(await redisCommand(await loopbackPortOf(b.tunnel), ['PING']), '+PONG');
      assert.ok(b.ssh.running);
    });
  });

  describe("a key's authorized_keys options", () => {
    const line = (options: string, key: KeyFiles): string => `${options} ${key.publicKey}`;

    it('refuses a key used from an address its from= excludes, and accepts it from one the list allows', async () => {
      const g = await gateway({ authorizedKeys: `${line('from="127.0.0.0/8,!127.0.0.1"', brokerA)}\n` });
      const outside = startSsh(procs, brokerA, g.port, ['-b', '127.0.0.1', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1']);
      assert.equal((await outside.waitExit()).code, 255);
      assert.match(outside.output, /Permission denied \(publickey\)/);
      assert.equal(g.tunnels.length, 0);
      assert.equal(await counterValue(g.metrics.sshAuthFailures, { method: 'publickey' }), 1);
      const failure = logs.lines.find((l) => l.message === 'ssh authentication failed');
      assert.deepEqual([failure?.src, failure?.why, failure?.broker, failure?.fingerprint], ['127.0.0.1', 'source_not_permitted', 'broker-a', brokerA.fingerprint]);

      const { tunnel } = await openTunnel(g, brokerA, ['-b', '127.0.0.2']);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.ok(logs.lines.some((l) => l.message === 'broker authenticated' && l.src === '127.0.0.2'));
    });

    it('refuses a key past its expiry-time, and accepts a key whose expiry-time is ahead', async () => {
      const g = await gateway({ authorizedKeys: [line('expiry-time="20200101Z"', brokerA), line('expiry-time="20991231235959Z"', brokerB)].join('\n') });
      const expired = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1']);
      assert.equal((await expired.waitExit()).code, 255);
      assert.match(expired.output, /Permission denied \(publickey\)/);
      assert.equal(logs.lines.find((l) => l.message === 'ssh authentication failed')?.why, 'expired');
      assert.equal(g.tunnels.length, 0);

      const { tunnel } = await openTunnel(g, brokerB);
      assert.equal(tunnel.peer.name, 'broker-b');
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });

    it('refuses a -R its permitlisten does not list (OpenSSH sends "localhost" for a bare port), and opens the listed one', async () => {
      const g = await gateway({ authorizedKeys: `${line(`restrict,port-forwarding,permitlisten="127.0.0.1:${queuePort}"`, brokerA)}\n` });
      // Loopback and the queue port, so the gateway's own forward policy would allow it.
      const bare = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${queuePort}:127.0.0.1:${redis.port}`, '127.0.0.1']);
      assert.notEqual((await bare.waitExit()).code, 0);
      assert.match(bare.output, /remote port forwarding failed/);
      assert.equal(g.tunnels.length, 0);
      assert.match(String(refusals('tcpip-forward')[0]?.why), /not in the key's permitlisten/);

      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });

    it('refuses every -R of a key with restrict and no port-forwarding after it', async () => {
      const g = await gateway({ authorizedKeys: `${line('restrict', brokerA)}\n${brokerB.publicKey}\n` });
      const ssh = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1']);
      assert.notEqual((await ssh.waitExit()).code, 0);
      assert.equal(g.tunnels.length, 0);
      assert.equal(refusals('tcpip-forward')[0]?.why, 'port forwarding is off for this key');
      // The same request from an unrestricted key gets its tunnel.
      const { tunnel } = await openTunnel(g, brokerB);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });
  });

  describe('authorized_keys changing while the gateway runs', () => {
    it('cuts off a broker whose key leaves the list, closing its tunnel, refuses it afterwards, and keeps the other broker', async () => {
      const g = await gateway();
      const a = await openTunnel(g, brokerA);
      const b = await openTunnel(g, brokerB);
      const closed = once(a.tunnel, 'closed');
      g.server.setAuthorizedKeys(parseAuthorizedKeys(`${brokerB.publicKey}\n`));
      await closed;
      await a.ssh.waitExit();
      await assert.rejects(redisCommand(await loopbackPortOf(a.tunnel), ['PING']));
      assert.equal(await redisCommand(await loopbackPortOf(b.tunnel), ['PING']), '+PONG');
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: its key is no longer authorized' && l.broker === 'broker-a' && l.why === 'key_removed'));

      const again = startSsh(procs, brokerA, g.port, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', validForward(), '127.0.0.1']);
      assert.equal((await again.waitExit()).code, 255);
      assert.match(again.output, /Permission denied \(publickey\)/);
    });

    it("cuts off a broker whose key's new from= excludes the address it came from", async () => {
      const g = await gateway();
      const a = await openTunnel(g, brokerA);
      const closed = once(a.tunnel, 'closed');
      g.server.setAuthorizedKeys(parseAuthorizedKeys(`from="127.0.0.2" ${brokerA.publicKey}\n${brokerB.publicKey}\n`));
      await closed;
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: its key is no longer authorized' && l.why === 'source_not_permitted'));
      // From the address the new list allows, the same key gets in.
      const { tunnel } = await openTunnel(g, brokerA, ['-b', '127.0.0.2']);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
    });
  });

  describe('unauthenticated connections (MaxStartups)', () => {
    // Per test: a socket of an earlier test may report its close late.
    let idle: Socket[];
    let closedIdle: number;

    beforeEach(() => {
      idle = [];
      closedIdle = 0;
    });

    afterEach(() => {
      for (const s of idle) s.destroy();
    });

    /** Opens `count` TCP connections from `source` that never send a byte, like a knocked idle client. */
    async function holdIdle(g: GatewayFixture, source: string, count: number): Promise<void> {
      const mine = idle;
      await Promise.all(
        Array.from({ length: count }, () => {
          const s = connect({ host: '127.0.0.1', port: g.port, localAddress: source });
          s.on('error', () => undefined);
          // Reads (and drops) the banner, so the socket sees the gateway's close.
          s.resume();
          s.on('close', () => {
            if (idle === mine) closedIdle++;
          });
          mine.push(s);
          return once(s, 'connect');
        }),
      );
    }

    /** Waits until the gateway has decided on every idle client: no more of them closing. */
    async function settled(): Promise<void> {
      let last = -1;
      let since = Date.now();
      await waitFor('the idle clients to settle', () => {
        if (closedIdle !== last) {
          last = closedIdle;
          since = Date.now();
        }
        return Date.now() - since >= 500;
      });
    }

    // The gateway's defaults: 64 connections, 16 unauthenticated, 4 from one address.
    const limits = { maxConnections: 64, maxStartups: 16, maxStartupsPerSource: 4, setupTimeoutMs: 30_000 };

    it('keeps idle clients from one address to their per-source share, and the broker gets in', async () => {
      const g = await gateway(limits);
      await holdIdle(g, '127.0.0.2', 64);
      await settled();

      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'startups_per_source' }), 60);
      assert.equal(idle.length - closedIdle, 4, 'the four admitted idle clients still hold their slots');
    });

    it('lets the broker in while idle clients from many addresses hold every unauthenticated slot, evicting the oldest of the busiest', async () => {
      const g = await gateway(limits);
      // 20 addresses × 4, more than the 64 connections: idle clients take every
      // unauthenticated slot (and, as they arrive, one another's).
      for (let i = 0; i < 20; i++) await holdIdle(g, `127.0.1.${i + 1}`, 4);
      await settled();
      const evictedBefore = await counterValue(g.metrics.sshConnections, { result: 'evicted' });

      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'evicted' }), evictedBefore + 1);
      await waitFor('16 slots: 15 idle clients and the broker, now authenticated', () => idle.length - closedIdle === 15);
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: unauthenticated, its slot went to a newcomer' && l.newcomer === '127.0.0.1'));
    });

    it('closes a client that never sends its banner when the setup time runs out', async () => {
      const g = await gateway({ setupTimeoutMs: 1000 });
      await holdIdle(g, '127.0.0.2', 1);
      await waitFor('the idle client closed', () => closedIdle === 1, 5000);
      assert.ok(logs.lines.some((l) => l.message === 'ssh connection closed: no forward requested in time' && l.authenticated === false));
    });
  });

  describe('logs', () => {
    it('never contain private key material of the host or of any client', async () => {
      const g = await gateway();
      const { tunnel } = await openTunnel(g, brokerA);
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      const refused = startSsh(procs, stranger, g.port, ['-N', '127.0.0.1']);
      await refused.waitExit();
      const shell = startSsh(procs, brokerB, g.port, ['-tt', '127.0.0.1']);
      await shell.waitExit();

      const text = logs.text();
      assert.match(text, /broker authenticated/);
      assert.match(text, /ssh authentication failed/);
      assert.match(text, /ssh request refused/);
      for (const key of [hostKey, brokerA, brokerB, stranger]) {
        for (const chunk of secretChunks(key.privateKey)) assert.ok(!text.includes(chunk), `a line of ${key.comment}'s private key was logged`);
      }
    });
  });
});
