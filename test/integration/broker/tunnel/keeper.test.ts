import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GatewayTarget } from '../../../../services/broker/config';
import { MAX_QUEUE_CHANNELS_PER_GATEWAY } from '../../../../services/broker/redis/config';
import { TunnelKeeper, type TunnelState } from '../../../../services/broker/tunnel/keeper';
import { timeSequence, windowOf, type TimeSpec } from '../../../../services/common/knock/sequence';
import { createCorePki } from '../../../support/core-fixtures';
import { memoryLogger } from '../../../support/logger';
import { freePort, listenOnPortBlock } from '../../../support/ports';
import {
  counterValue,
  Procs,
  redisCommand,
  startGateway,
  startRedis,
  startSshd,
  writeKeyPair,
  type GatewayFixture,
  type KeyFiles,
  type Proc,
  type RedisFixture,
} from '../../../support/ssh-fixtures';
import { requireBinary } from '../../../support/binaries';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';
import { loopbackPortOf } from '../../../support/tunnel-bridge';

describe('TunnelKeeper against real SSH servers', function () {
  this.timeout(30_000);

  let tmp: ReturnType<typeof tempDir>;
  const shared = new Procs();
  let redis: RedisFixture;
  let hostKey: KeyFiles;
  let impostorKey: KeyFiles;
  let brokerKey: KeyFiles;
  let knockPorts: number[];

  let procs: Procs;
  let logs: ReturnType<typeof memoryLogger>;
  let keeper: TunnelKeeper | undefined;
  let states: TunnelState[];
  let gateways: GatewayFixture[];

  before(async () => {
    tmp = tempDir('nonstop-keeper-');
    hostKey = writeKeyPair(tmp.dir, 'host_ed25519', 'gateway-host');
    impostorKey = writeKeyPair(tmp.dir, 'impostor_ed25519', 'impostor-host');
    brokerKey = writeKeyPair(tmp.dir, 'broker_ed25519', 'broker-1');
    redis = await startRedis(shared, tmp.dir);
    // Closed ports on loopback: the knock's SYNs are refused there, which the keeper ignores.
    knockPorts = [await freePort(), await freePort(), await freePort()];
  });

  after(async () => {
    await shared.stopAll();
    tmp.cleanup();
  });

  beforeEach(() => {
    procs = new Procs();
    logs = memoryLogger();
    states = [];
    gateways = [];
  });

  afterEach(async () => {
    if (keeper) {
      keeper.stop();
      await waitFor('the keeper to stop', () => keeper?.state === 'stopped', 10_000, 20);
      keeper = undefined;
    }
    for (const g of gateways) await g.close();
    await procs.stopAll();
  });

  function target(sshPort: number, hostKeyFingerprint: string): GatewayTarget {
    return {
      id: 'gw-test',
      host: '127.0.0.1',
      sshPort,
      httpsPort: 1,
      hostKeyFingerprints: [hostKeyFingerprint],
      queueUsername: 'gateway-gw-test',
      queuePasswordSha256: ['0'.repeat(64)],
      knock: { mode: 'static', ports: knockPorts },
    };
  }

  function startKeeper(t: GatewayTarget, queuePort: number, user = 'broker', now?: () => number, redisPort = redis.port): TunnelKeeper {
    const k = new TunnelKeeper(
      t,
      {
        privateKeys: () => [brokerKey.privateKey],
        user,
        readyTimeoutMs: 5000,
        connectTimeoutMs: 2000,
        keepaliveIntervalMs: 1000,
        keepaliveCountMax: 3,
        knockGapMs: 1,
        knockSettleMs: 0,
        reconnect: { baseMs: 50, capMs: 500 },
        queuePort,
        redisPort,
        ...(now ? { now } : {}),
      },
      logs.log,
    );
    k.on('state', (s) => states.push(s));
    keeper = k;
    k.start();
    return k;
  }

  async function gateway(queuePort: number, port?: number): Promise<GatewayFixture> {
    const g = await startGateway({ hostKey, authorizedKeys: brokerKey.publicKey, queuePort, log: logs.log, ...(port ? { port } : {}) });
    gateways.push(g);
    return g;
  }

  const count = (s: TunnelState): number => states.filter((x) => x === s).length;

  /**
   * A connection to the gateway's end of the tunnel that stays open: resolves with it once
   * a PING through it came back from redis, or with 'closed' if it was closed unanswered.
   */
  function queueConnection(port: number): Promise<Socket | 'closed'> {
    return new Promise((resolve, reject) => {
      const sock = connect(port, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`no answer through 127.0.0.1:${port}`));
      }, 10_000);
      sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
      sock.on('data', (b: Buffer) => {
        got += b.toString('latin1');
        if (got === '+PONG\r\n') {
          clearTimeout(timer);
          resolve(sock);
        }
      });
      sock.on('error', () => undefined);
      sock.on('close', () => {
        clearTimeout(timer);
        resolve('closed');
      });
    });
  }

  /**
   * The gateway opens queue connections through the tunnel until one is refused: the
   * keeper carries MAX_QUEUE_CHANNELS_PER_GATEWAY to redis (each answers), refuses the next
   * (closed unanswered, logged once however many are refused), and takes a new one once
   * one of them has closed.
   */
  async function assertChannelCap(port: number, k: TunnelKeeper): Promise<void> {
    const held: Socket[] = [];
    try {
      for (let i = 0; i < MAX_QUEUE_CHANNELS_PER_GATEWAY; i++) {
        const c = await queueConnection(port);
        assert.notEqual(c, 'closed', `connection ${i + 1} was refused`);
        held.push(c as Socket);
      }
      for (let i = 0; i < 3; i++) {
        const extra = await queueConnection(port);
        if (extra !== 'closed') held.push(extra);
        assert.ok(extra === 'closed', `connection ${MAX_QUEUE_CHANNELS_PER_GATEWAY + i + 1} reached redis`);
      }
      assert.equal(k.refusedChannels, 3);
      assert.equal(logs.lines.filter((l) => l.message === 'gateway opened more queue connections than it may; refusing the extra ones').length, 1);
      // The ones held still work.
      assert.equal(await redisCommand(redis.port, ['PING']), '+PONG');
      held.shift()!.destroy();
      const again = await waitFor('a connection to be taken again after one closed', async () => {
        const c = await queueConnection(port);
        return c === 'closed' ? undefined : c;
      }, 10_000, 100);
      held.push(again);
      assert.equal(k.state, 'up');
    } finally {
      for (const c of held) c.destroy();
    }
  }

  describe('with the gateway SSH server', () => {
    it('comes up with the pinned host key and carries the gateway’s connections to the local redis', async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, hostKey.fingerprint), queuePort);
      await waitFor('the keeper to be up', () => k.state === 'up');
      assert.deepEqual(states.slice(0, 3), ['knocking', 'connecting', 'up']);
      const tunnel = await waitFor('the server to announce the tunnel', () => g.tunnels[0]);
      assert.equal(tunnel.peer.name, 'broker-1');
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.equal(k.connects, 1);
      assert.ok(logs.lines.some((l) => l.message === 'tunnel up' && l.gateway === 'gw-test'));
    });

    it("carries at most MAX_QUEUE_CHANNELS_PER_GATEWAY of the gateway's queue connections at once and refuses more, a new one again once one closed", async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, hostKey.fingerprint), queuePort);
      const tunnel = await waitFor('the tunnel', () => g.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');
      await assertChannelCap(await loopbackPortOf(tunnel), k);
      assert.equal(k.connects, 1);
    });

    it("frees a connection's slot when Redis is down and refuses it, so the gateway gets back in once Redis is back", async () => {
      // A redis-server of its own, to stop and start on the same port.
      const redisPort = await freePort();
      const bin = requireBinary('redis-server', '/usr/bin/redis-server');
      const args = ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp.dir];
      const startOwnRedis = async (): Promise<Proc> => {
        const p = procs.start(bin, args, { cwd: tmp.dir });
        await waitFor('redis-server to answer', async () => (await redisCommand(redisPort, ['PING'], 1000)) === '+PONG', 10_000, 50);
        return p;
      };
      let own = await startOwnRedis();
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, hostKey.fingerprint), queuePort, 'broker', undefined, redisPort);
      const tunnel = await waitFor('the tunnel', () => g.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');

      await own.stop();
      // More attempts than the cap, each refused by the missing Redis (a lane reconnecting).
      for (let i = 0; i < 2 * MAX_QUEUE_CHANNELS_PER_GATEWAY; i++) assert.equal(await queueConnection(await loopbackPortOf(tunnel)), 'closed');
      await waitFor('every slot to be free', () => k.openChannels === 0, 5000, 20);
      own = await startOwnRedis();
      const back = await queueConnection(await loopbackPortOf(tunnel));
      assert.notEqual(back, 'closed', 'refused after Redis came back');
      (back as Socket).destroy();
      assert.equal(k.refusedChannels, 0);
    });

    it('never comes up when the host key differs from the pin, logs the presented key as an error and keeps retrying', async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, impostorKey.fingerprint), queuePort);
      await waitFor('three failed attempts', () => count('backoff') >= 3 && count('connecting') >= 3);
      assert.equal(count('up'), 0);
      assert.equal(k.connects, 0);
      assert.equal(g.tunnels.length, 0);
      // Every attempt gets as far as SSH (not refused earlier) and fails on the host key.
      const errors = logs.lines.filter((l) => l.level === 'error' && l.message === 'tunnel attempt failed');
      assert.ok(errors.length >= 2, `expected an error line per attempt, got ${errors.length}`);
      for (const e of errors) assert.ok(String(e.err).includes(hostKey.fingerprint), `the line names the presented key: ${String(e.err)}`);
      // Attempts alternate with backoff: no two connection attempts back to back.
      const attempts = states.filter((s) => s === 'connecting' || s === 'backoff');
      for (let i = 1; i < attempts.length; i++) assert.ok(!(attempts[i] === 'connecting' && attempts[i - 1] === 'connecting'), states.join(','));
    });

    it('never comes up when the gateway refuses its queue forward, and keeps retrying', async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, hostKey.fingerprint), queuePort + 1);
      await waitFor('two refused attempts', () => count('backoff') >= 2);
      assert.equal(count('up'), 0);
      assert.equal(k.connects, 0);
      assert.equal(g.tunnels.length, 0);
      assert.ok((await counterValue(g.metrics.sshRefused, { kind: 'tcpip-forward' })) >= 2);
      assert.ok(logs.lines.some((l) => l.level === 'warn' && /gateway refused the queue forward/.test(String(l.err))));
    });

    it('reconnects by itself when the gateway restarts on the same port with the same host key', async () => {
      const queuePort = await freePort();
      const first = await gateway(queuePort);
      const port = first.port;
      const k = startKeeper(target(port, hostKey.fingerprint), queuePort);
      await waitFor('the first tunnel', () => first.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');

      await first.close();
      await waitFor('the keeper to notice', () => k.state !== 'up' && count('backoff') >= 1);
      // Let a few attempts fail against the closed port.
      await waitFor('a failed reconnect attempt', () => logs.lines.some((l) => l.message === 'tunnel attempt failed'));

      const second = await gateway(queuePort, port);
      const tunnel = await waitFor('a tunnel on the restarted gateway', () => second.tunnels[0]);
      await waitFor('the keeper to be up again', () => k.state === 'up');
      assert.equal(await redisCommand(await loopbackPortOf(tunnel), ['PING']), '+PONG');
      assert.equal(k.connects, 2);
    });

    it('goes to stopped on stop() and connects no more', async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const k = startKeeper(target(g.port, hostKey.fingerprint), queuePort);
      const tunnel = await waitFor('the tunnel', () => g.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');

      const closed = once(tunnel, 'closed');
      k.stop();
      await waitFor('the keeper to stop', () => k.state === 'stopped');
      await closed;
      // Longer than the reconnect cap a few times over: a reconnect would have happened by now.
      await sleep(1500);
      assert.equal(k.state, 'stopped');
      assert.equal(states.at(-1), 'stopped');
      assert.equal(count('knocking'), 1);
      assert.equal(k.connects, 1);
      assert.equal(g.tunnels.length, 1);
      assert.equal(await counterValue(g.metrics.sshConnections, { result: 'admitted' }), 1);
    });

    it('stops from backoff at once, without another attempt', async () => {
      const queuePort = await freePort();
      const g = await gateway(queuePort);
      const port = g.port;
      await g.close();
      const k = startKeeper(target(port, hostKey.fingerprint), queuePort);
      await waitFor('a failed attempt', () => k.state === 'backoff');
      k.stop();
      await waitFor('the keeper to stop', () => k.state === 'stopped');
      const knocks = count('knocking');
      // A gateway that would now accept it: the stopped keeper must not come.
      const back = await gateway(queuePort, port);
      await sleep(1500);
      assert.equal(count('knocking'), knocks);
      assert.equal(back.tunnels.length, 0);
      assert.equal(await counterValue(back.metrics.sshConnections), 0);
    });
  });

  describe('with OpenSSH sshd', () => {
    let sshdDir: ReturnType<typeof tempDir>;

    beforeEach(() => {
      sshdDir = tempDir('nonstop-sshd-');
    });

    afterEach(() => {
      sshdDir.cleanup();
    });

    it('comes up as root with sshd’s host key pinned, forwards sshd’s queue port listener to the local redis and survives an sshd restart', async () => {
      const sshdPort = await freePort();
      const queuePort = await freePort();
      assert.notEqual(queuePort, redis.port);
      const sshdHostKey = writeKeyPair(sshdDir.dir, 'ssh_host_ed25519_key', 'sshd-host');
      const sshdOptions = { dir: sshdDir.dir, port: sshdPort, hostKey: sshdHostKey, authorizedKeys: brokerKey.publicKey, permitListen: `127.0.0.1:${queuePort}` };
      let sshd: Proc = await startSshd(procs, sshdOptions);

      const k = startKeeper(target(sshdPort, sshdHostKey.fingerprint), queuePort, 'root');
      await waitFor(`the keeper to be up (sshd: ${sshd.output})`, () => k.state === 'up');
      assert.equal(await redisCommand(queuePort, ['PING']), '+PONG');
      assert.match(sshd.output, /Accepted publickey for root/);

      await sshd.stop();
      await waitFor('the keeper to go to backoff', () => k.state !== 'up' && count('backoff') >= 1);
      await assert.rejects(redisCommand(queuePort, ['PING']));

      sshd = await startSshd(procs, sshdOptions);
      await waitFor(`the keeper to be up again (sshd: ${sshd.output})`, () => k.state === 'up' && k.connects === 2);
      assert.equal(await redisCommand(queuePort, ['PING']), '+PONG');
    });

    it("refuses sshd's queue connections beyond MAX_QUEUE_CHANNELS_PER_GATEWAY at once, and takes a new one once one closed", async () => {
      const sshdPort = await freePort();
      const queuePort = await freePort();
      const sshdHostKey = writeKeyPair(sshdDir.dir, 'ssh_host_ed25519_key', 'sshd-host');
      const sshd = await startSshd(procs, { dir: sshdDir.dir, port: sshdPort, hostKey: sshdHostKey, authorizedKeys: brokerKey.publicKey, permitListen: `127.0.0.1:${queuePort}` });
      const k = startKeeper(target(sshdPort, sshdHostKey.fingerprint), queuePort, 'root');
      await waitFor(`the keeper to be up (sshd: ${sshd.output})`, () => k.state === 'up');
      await assertChannelCap(queuePort, k);
    });
  });

  describe("knocking in the gateway's time window", () => {
    const PERIOD_MS = 30_000;
    /** Knocks per sequence and ports in the range: enough that a sequence names one window alone. */
    const LENGTH = 4;
    const RANGE = 48;
    let listeners: Server[];
    let rangeStart: number;
    let seen: number[];

    /**
     * A block of consecutive loopback ports that all accept: the knock's SYNs show up in `sink`
     * in order. Each keeper of a test gets a block of its own, so a SYN of one that arrives
     * late (its knock was under way when it stopped) never lands among the next one's.
     */
    async function listenOnRange(size: number, sink: number[]): Promise<number> {
      const { base, servers } = await listenOnPortBlock(size, sink);
      listeners.push(...servers);
      return base;
    }

    beforeEach(async () => {
      listeners = [];
      seen = [];
      rangeStart = await listenOnRange(RANGE, seen);
    });

    afterEach(() => {
      for (const srv of listeners) srv.close();
    });

    /**
     * Which window the knock was drawn for, by matching its derived ports against each
     * candidate; undefined when none or more than one matches. With 3 knocks over 16 ports two
     * windows' sequences coincided often enough (1 in 256 per window) that the first match was
     * sometimes the wrong window: 4 knocks over 48 ports make that about 1 in 100,000.
     */
    function windowOfKnock(spec: TimeSpec, knock: number[], aroundMs: number): number | undefined {
      const nonce = knock[0]! - spec.rangeStart;
      const n = windowOf(spec, aroundMs);
      const matches: number[] = [];
      for (let w = n - 5; w <= n + 5; w++) if (timeSequence(spec, w, nonce).join() === knock.join()) matches.push(w);
      return matches.length === 1 ? matches[0] : undefined;
    }

    for (const skewMs of [60_000, -60_000]) {
      it(`knocks for the gateway's window with its own clock ${skewMs > 0 ? 'ahead' : 'behind'} by 60 s, reading the gateway's Date header; without it, for its own`, async () => {
        const pki = await createCorePki();
        const dateServer = createHttpsServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (_req, res) => res.end());
        await new Promise<void>((resolve) => dateServer.listen(0, '127.0.0.1', () => resolve()));
        try {
          const spec: TimeSpec = { mode: 'time', secret: Buffer.from('knock-secret'), length: LENGTH, rangeStart, rangeEnd: rangeStart + RANGE - 1, periodMs: PERIOD_MS };
          const skewed = (): number => Date.now() + skewMs;
          // The SSH port is closed: each cycle knocks, fails to connect, backs off.
          const t = { ...target(await freePort(), hostKey.fingerprint), knock: spec, httpsPort: (dateServer.address() as AddressInfo).port };
          const k = startKeeper(t, await freePort(), 'broker', skewed);
          await waitFor('a whole knock', () => seen.length >= LENGTH, 10_000, 20);
          k.stop();
          const knock = seen.slice(0, LENGTH);
          const drawn = windowOfKnock(spec, knock, Date.now());
          assert.ok(drawn !== undefined && Math.abs(drawn - windowOf(spec, Date.now())) <= 1, `knocked for window ${drawn}, the gateway is in ${windowOf(spec, Date.now())}`);
          assert.ok(logs.lines.some((l) => l.message === "this host's clock differs from the gateway's; knocking in the gateway's time"));

          // Positive control from the same keeper code: with no Date to read it knocks in its own (skewed) time.
          await waitFor('the keeper to stop', () => k.state === 'stopped', 10_000, 20);
          keeper = undefined;
          const blindSeen: number[] = [];
          const blindSpec: TimeSpec = { ...spec, rangeStart: await listenOnRange(RANGE, blindSeen) };
          blindSpec.rangeEnd = blindSpec.rangeStart + RANGE - 1;
          const blind = startKeeper({ ...t, knock: blindSpec, httpsPort: await freePort() }, await freePort(), 'broker', skewed);
          await waitFor('a whole knock', () => blindSeen.length >= LENGTH, 10_000, 20);
          blind.stop();
          const own = windowOfKnock(blindSpec, blindSeen.slice(0, LENGTH), skewed());
          assert.ok(own !== undefined && Math.abs(own - windowOf(blindSpec, skewed())) <= 1, `blind knock window ${own}, its own clock is in ${windowOf(blindSpec, skewed())}`);
          assert.ok(Math.abs(own - windowOf(blindSpec, Date.now())) >= 1);
        } finally {
          dateServer.close();
        }
      });
    }
  });
});
