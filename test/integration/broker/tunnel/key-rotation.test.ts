import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Connection } from 'ssh2';
import { parseGatewaysFile, type GatewayTarget } from '../../../../services/broker/config';
import { TunnelKeeper } from '../../../../services/broker/tunnel/keeper';
import { fingerprintOfKey } from '../../../../services/common/pki/ssh-keys';
import { parseAuthorizedKeys } from '../../../../services/gateway/ssh/authorized-keys';
import type { Tunnel } from '../../../../services/gateway/tunnel/tunnel';
import { requireBinary } from '../../../support/binaries';
import { memoryLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { Procs, redisCommand, startGateway, startRedis, writeKeyPair, type GatewayFixture, type KeyFiles, type RedisFixture } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';
import { loopbackPortOf } from '../../../support/tunnel-bridge';

/**
 * The two SSH keys' rotations with the real parts: the gateway's ssh2 server and the
 * broker's TunnelKeeper, with OpenSSH's ssh-keyscan as an independent look at the host key
 * the gateway presents. The steps are the ones `nonstop-keygen rotate|retire
 * gateway-host-key|broker-key` cause, applied as the services apply them when they notice
 * their files (setGateway, setHostKey, keysChanged, setAuthorizedKeys).
 */
describe('SSH key rotation between the gateway SSH server and the TunnelKeeper', function () {
  this.timeout(60_000);

  let tmp: ReturnType<typeof tempDir>;
  const shared = new Procs();
  let redis: RedisFixture;
  let logs: ReturnType<typeof memoryLogger>;
  let keepers: TunnelKeeper[];
  let gateways: GatewayFixture[];
  let held: Socket[];
  let knockPorts: number[];

  before(async () => {
    tmp = tempDir('nonstop-key-rotation-');
    redis = await startRedis(shared, tmp.dir);
    knockPorts = [await freePort(), await freePort(), await freePort()];
  });

  after(async () => {
    await shared.stopAll();
    tmp.cleanup();
  });

  beforeEach(() => {
    logs = memoryLogger();
    keepers = [];
    gateways = [];
    held = [];
  });

  afterEach(async () => {
    for (const s of held) s.destroy();
    for (const k of keepers) {
      k.stop();
      await waitFor('the keeper to stop', () => k.state === 'stopped', 10_000, 20);
    }
    for (const g of gateways) await g.close();
  });

  let n = 0;
  const key = (name: string): KeyFiles => writeKeyPair(tmp.dir, `${name}-${++n}`, name);

  /** The gateway as a broker reads it from gateways.json, pinning these host keys. */
  function target(sshPort: number, hostKeyFingerprints: string[]): GatewayTarget {
    const entry = { id: 'gw-rot', host: '127.0.0.1', sshPort, httpsPort: 1, hostKeyFingerprint: hostKeyFingerprints, queuePasswordSha256: '0'.repeat(64), knock: { mode: 'static', ports: knockPorts } };
    return parseGatewaysFile('/gateways.json', JSON.stringify({ gateways: [entry] }))[0]!;
  }

  function startKeeper(t: GatewayTarget, queuePort: number, privateKeys: () => readonly string[]): TunnelKeeper {
    const k = new TunnelKeeper(
      t,
      {
        privateKeys,
        user: 'broker',
        readyTimeoutMs: 20_000,
        connectTimeoutMs: 2000,
        keepaliveIntervalMs: 1000,
        keepaliveCountMax: 3,
        knockGapMs: 1,
        knockSettleMs: 0,
        reconnect: { baseMs: 50, capMs: 500 },
        keyChangeGraceMs: 1500,
        queuePort,
        redisPort: redis.port,
      },
      logs.log,
    );
    keepers.push(k);
    k.start();
    return k;
  }

  async function gateway(hostKey: KeyFiles, authorized: readonly KeyFiles[], queuePort: number, maxFailures = 100): Promise<GatewayFixture> {
    // Refused keys are part of these tests (the old key after retire, a new one offered early):
    // the failure limit must not block loopback for the positive controls that follow.
    const g = await startGateway({ hostKey, authorizedKeys: authorized.map((k) => k.publicKey).join('\n'), queuePort, log: logs.log, maxFailures });
    gateways.push(g);
    return g;
  }

  /**
   * What the gateway's queue lane does on a tunnel: two connections through it (command and
   * subscriber), each set up by two commands Redis answers. The keeper retires an old tunnel
   * once the new one's lane has had those answers.
   */
  async function lane(t: Tunnel, answers = 2): Promise<Socket[]> {
    const socks: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const sock = connect(await loopbackPortOf(t), '127.0.0.1');
      held.push(sock);
      socks.push(sock);
      await new Promise<void>((resolve) => sock.once('connect', resolve));
    }
    for (let n = 0; n < answers; n++) await Promise.all(socks.map(ping));
    return socks;
  }

  /** One command and its answer, as each step of the lane's setup (AUTH, then PING or SUBSCRIBE). */
  function ping(sock: Socket): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.write('*1\r\n$4\r\nPING\r\n');
      sock.once('data', (b: Buffer) => (b.toString() === '+PONG\r\n' ? resolve() : reject(new Error(b.toString()))));
    });
  }

  /** The host key the gateway presents to a new connection, as OpenSSH's ssh-keyscan sees it. */
  async function presentedHostKey(port: number): Promise<string> {
    const bin = requireBinary('ssh-keyscan', '/usr/bin/ssh-keyscan');
    const { stdout } = await promisify(execFile)(bin, ['-T', '5', '-t', 'ed25519', '-p', String(port), '127.0.0.1']);
    const line = stdout.split('\n').find((l) => l.includes(' ssh-ed25519 '));
    assert.ok(line, `ssh-keyscan saw no ed25519 host key: ${stdout}`);
    return fingerprintOfKey(line.slice(line.indexOf('ssh-ed25519')));
  }

  /** Every SSH connection the gateway has authenticated, to make it re-key them as a long-lived tunnel eventually does. */
  function gatewayConnections(g: GatewayFixture): Connection[] {
    return [...(g.server as unknown as { authenticated: Map<Connection, unknown> }).authenticated.keys()];
  }

  async function rekey(conn: Connection): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      // ssh2's types give the callback no error argument; a failed re-key is an 'error' on the connection.
      conn.once('error', reject);
      conn.rekey(() => {
        conn.off('error', reject);
        resolve();
      });
    });
  }

  const authenticatedWith = (): unknown[] => logs.lines.filter((l) => l.message === 'broker authenticated').map((l) => l.fingerprint);

  describe('gateway host key', () => {
    it('rotate: the established tunnel keeps its host key across a re-key while new connections get the new key; retire: the tunnel is replaced on the new key before the old one closes', async () => {
      const oldHost = key('host-old');
      const newHost = key('host-new');
      const broker = key('broker-1');
      const queuePort = await freePort();
      const g = await gateway(oldHost, [broker], queuePort);
      const k = startKeeper(target(g.port, [oldHost.fingerprint]), queuePort, () => [broker.privateKey]);
      const first = await waitFor('the first tunnel', () => g.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');
      await lane(first);
      assert.equal(await presentedHostKey(g.port), oldHost.fingerprint, 'positive control: ssh-keyscan sees the key the gateway started with');

      // rotate: the brokers pin both first, then the gateway takes the new key.
      k.setGateway(target(g.port, [newHost.fingerprint, oldHost.fingerprint]));
      g.server.setHostKey(newHost.privateKey);
      assert.equal(await presentedHostKey(g.port), newHost.fingerprint, 'a new connection gets the new host key');
      // A re-key of the established connection must present the key its broker verified.
      const [conn] = gatewayConnections(g);
      assert.ok(conn, 'the gateway holds the tunnel');
      await rekey(conn);
      assert.equal(await redisCommand(await loopbackPortOf(first), ['PING']), '+PONG', 'the tunnel carries traffic after the re-key');
      assert.equal(k.connects, 1, 'the tunnel was not set up again');
      assert.equal(k.replacements, 0);
      assert.equal(k.verifiedHostKey, oldHost.fingerprint);
      assert.ok(!logs.lines.some((l) => l.message === 'tunnel closed'), 'the tunnel did not close');

      // retire: only the new key is pinned; the tunnel verified against the old one is replaced.
      let oldClosed = false;
      first.once('closed', () => (oldClosed = true));
      k.setGateway(target(g.port, [newHost.fingerprint]));
      const second = await waitFor('the replacement tunnel', () => g.tunnels[1]);
      assert.equal(oldClosed, false, 'the old tunnel is still open when the new one is announced');
      assert.equal(await redisCommand(await loopbackPortOf(first), ['PING']), '+PONG', 'the old tunnel still carries traffic');
      // The new lane's connections are open and half set up: not ready yet, so the old tunnel stays.
      const socks = await lane(second, 1);
      await sleep(1000);
      assert.equal(oldClosed, false, 'the old tunnel closed before the new lane had its setup answered');
      await Promise.all(socks.map(ping));
      await waitFor('the old tunnel to close', () => oldClosed);
      assert.equal(k.replacements, 1);
      assert.equal(k.verifiedHostKey, newHost.fingerprint);
      assert.equal(k.state, 'up');
      assert.equal(await redisCommand(await loopbackPortOf(second), ['PING']), '+PONG');
      assert.ok(!logs.lines.some((l) => l.message === 'tunnel closed'), 'the keeper never lost its tunnel');
    });

    it('a host key list change that still lists the verified key touches no tunnel', async () => {
      const host = key('host');
      const other = key('host-other');
      const broker = key('broker-1');
      const queuePort = await freePort();
      const g = await gateway(host, [broker], queuePort);
      const k = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => [broker.privateKey]);
      await waitFor('the keeper to be up', () => k.state === 'up');
      for (const list of [[other.fingerprint, host.fingerprint], [host.fingerprint, other.fingerprint], [host.fingerprint]]) k.setGateway(target(g.port, list));
      // Positive control below: a list without it is acted on.
      await sleep(1000);
      assert.equal(g.tunnels.length, 1);
      assert.ok(!logs.lines.some((l) => l.message === 'replacement tunnel attempt failed'));
      k.setGateway(target(g.port, [other.fingerprint]));
      await waitFor('a replacement attempt refused on the host key', () => logs.lines.some((l) => l.message === 'replacement tunnel attempt failed' && String(l.err).includes(host.fingerprint)));
      assert.equal(k.connects, 1);
      assert.equal(k.state, 'up', 'a replacement that fails leaves the tunnel in use');
    });

    it('a broker pinning [new, old] connects to a gateway presenting either, and to one presenting neither not at all', async () => {
      const oldHost = key('host-old');
      const newHost = key('host-new');
      const stranger = key('host-stranger');
      const broker = key('broker-1');
      for (const [presented, ok] of [[oldHost, true], [newHost, true], [stranger, false]] as const) {
        const queuePort = await freePort();
        const g = await gateway(presented, [broker], queuePort);
        const k = startKeeper(target(g.port, [newHost.fingerprint, oldHost.fingerprint]), queuePort, () => [broker.privateKey]);
        if (ok) {
          await waitFor(`the keeper to be up with ${presented.comment}`, () => k.state === 'up');
          assert.equal(k.verifiedHostKey, presented.fingerprint);
        } else {
          await waitFor('an attempt refused on the host key', () => logs.lines.some((l) => l.message === 'tunnel attempt failed' && String(l.err).includes(stranger.fingerprint)));
          assert.equal(k.connects, 0);
        }
      }
    });
  });

  describe('broker key', () => {
    it('a gateway that does not list the new key yet keeps its tunnel and is not driven to lock the broker out (5 failures a minute, the gateway default)', async () => {
      const host = key('host');
      const oldKey = key('broker-1');
      const newKey = key('broker-1');
      const queuePort = await freePort();
      // A gateway of the fleet keygen was not run for yet: it lists the old key alone.
      const g = await gateway(host, [oldKey], queuePort, 5);
      const k = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => [newKey.privateKey, oldKey.privateKey]);
      await waitFor('the keeper to be up on the previous key', () => k.state === 'up');
      const refusedMoves = (): number => logs.lines.filter((l) => l.message === 'replacement tunnel attempt failed').length;
      // Long enough for a backoff from 1 s to have made 5 more attempts (1+2+4+8 s after the grace).
      await sleep(20_000);
      assert.ok(refusedMoves() >= 1, 'the keeper did try to move to the new key (else nothing was tested)');
      assert.equal(k.state, 'up', 'the tunnel on the previous key is still in use');
      assert.equal(g.limiter.isBlocked('127.0.0.1'), false, `the gateway blocked the broker's address after ${refusedMoves()} refused moves`);
      // Positive control from the same address: a new connection still gets in.
      const other = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => [oldKey.privateKey]);
      await waitFor('a second connection from the same address', () => other.connects === 1, 10_000);
    });

    it('rotate: the new key is offered first and the previous one if refused; the tunnel moves to the new key make-before-break; retire: the old key is refused', async () => {
      const host = key('host');
      const oldKey = key('broker-1');
      const newKey = key('broker-1');
      const queuePort = await freePort();
      // The broker noticed its new key before the gateway reloaded authorized_keys.
      const g = await gateway(host, [oldKey], queuePort);
      let keys: readonly string[] = [newKey.privateKey, oldKey.privateKey];
      const k = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => keys);
      const first = await waitFor('the first tunnel', () => g.tunnels[0]);
      await waitFor('the keeper to be up', () => k.state === 'up');
      assert.deepEqual(authenticatedWith(), [oldKey.fingerprint], 'fell back to the previous key');
      let oldClosed = false;
      first.once('closed', () => (oldClosed = true));
      // The gateway reloads its authorized_keys (both keys) within the keeper's grace: the
      // keeper then moves its tunnel to the new key.
      g.server.setAuthorizedKeys(parseAuthorizedKeys(`${newKey.publicKey}\n${oldKey.publicKey}\n`));
      k.keysChanged();
      await lane(first);
      const second = await waitFor('the replacement tunnel', () => g.tunnels[1], 20_000);
      assert.equal(oldClosed, false, 'the old tunnel is still open when the new one is announced');
      await lane(second);
      await waitFor('the old tunnel to close', () => oldClosed);
      assert.deepEqual(authenticatedWith().slice(-1), [newKey.fingerprint]);
      assert.equal(k.replacements, 1);
      assert.ok(!logs.lines.some((l) => l.message === 'tunnel closed'), 'the keeper never lost its tunnel');

      // retire: the broker holds the new key alone, the gateway authorizes it alone; the tunnel stays.
      keys = [newKey.privateKey];
      k.keysChanged();
      g.server.setAuthorizedKeys(parseAuthorizedKeys(`${newKey.publicKey}\n`));
      assert.equal(await redisCommand(await loopbackPortOf(second), ['PING']), '+PONG');
      assert.equal(k.connects, 2);

      // The new key gets in (positive control, same gateway and the same kind of keeper), the old one is refused.
      const before = authenticatedWith().length;
      const newOnly = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => [newKey.privateKey]);
      await waitFor('positive control: the new key gets in', () => newOnly.connects === 1);
      assert.deepEqual(authenticatedWith().slice(before), [newKey.fingerprint]);
      const oldOnly = startKeeper(target(g.port, [host.fingerprint]), queuePort, () => [oldKey.privateKey]);
      const refused = (): boolean => logs.lines.some((l) => l.message === 'ssh authentication failed' && l.fingerprint === oldKey.fingerprint && l.method === 'publickey');
      const failuresBefore = logs.lines.filter((l) => l.message === 'ssh authentication failed' && l.fingerprint === oldKey.fingerprint).length;
      await waitFor('the old key refused', () => logs.lines.filter((l) => l.message === 'ssh authentication failed' && l.fingerprint === oldKey.fingerprint).length > failuresBefore && oldOnly.state === 'backoff', 20_000, 10);
      assert.ok(refused());
      assert.equal(oldOnly.connects, 0);
      assert.deepEqual(authenticatedWith().slice(before), [newKey.fingerprint], 'nothing authenticated with the old key');
    });
  });
});
