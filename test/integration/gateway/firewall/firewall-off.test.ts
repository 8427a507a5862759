import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { NoFirewall } from '../../../../services/gateway/firewall/no-firewall';
import { loadGatewayConfig } from '../../../../services/gateway/config';
import { KnockDoor, type KnockCapture } from '../../../../services/gateway/knock/door';
import type { SnifferEvents } from '../../../../services/gateway/knock/sniffer';
import type { KnockTracker } from '../../../../services/gateway/knock/tracker';
import { gatewayMetrics } from '../../../../services/gateway/metrics';
import { minimalGatewayEnv } from '../../../support/gateway-env';
import { expectConfigError } from '../../../support/config-error';
import { silentLogger } from '../../../support/logger';
import { freePort } from '../../../support/ports';
import { Procs, startGateway, startRedis, writeKeyPair, type GatewayFixture } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';

/** What an outsider learns from one TCP connection: did the handshake complete, what came back. */
interface Probe {
  connected: boolean;
  data: string;
  closedByPeer: boolean;
}

function probe(port: number, from: string, waitMs = 2000): Promise<Probe> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    const seen: Probe = { connected: false, data: '', closedByPeer: false };
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(seen);
    };
    const timer = setTimeout(done, waitMs);
    s.on('connect', () => (seen.connected = true));
    s.on('data', (b: Buffer) => {
      seen.data += b.toString('latin1');
      if (seen.data.includes('\n')) done();
    });
    s.on('end', () => (seen.closedByPeer = true));
    s.on('error', () => undefined);
    s.on('close', done);
  });
}

/**
 * Feeds SYNs to the door's real tracker, as the tcpdump sniffer does with captured ones. The
 * sniffer's filter ignores loopback sources by design (knockCaptureFilter), so a loopback
 * test cannot send real knock SYNs; the e2e suite knocks through the real sniffer.
 */
class SynFeed extends EventEmitter<SnifferEvents> implements KnockCapture {
  running = false;
  readonly restarts = 0;
  packets = 0;
  constructor(private readonly tracker: KnockTracker) {
    super();
  }
  start(): Promise<void> {
    this.running = true;
    return Promise.resolve();
  }
  stop(): void {
    this.running = false;
  }
  knock(src: string, ports: readonly number[]): void {
    for (const dport of ports) {
      this.packets++;
      const outcome = this.tracker.onSyn({ src, dport, sport: 40000 + this.packets, seq: this.packets });
      if (outcome !== 'ignored') this.emit('outcome', outcome, src);
    }
  }
}

/**
 * FIREWALL=off from both sides. The gateway refuses it unless FIREWALL_OFF_ACKNOWLEDGED
 * confirms the host filters the SSH port; acknowledged, the SSH port behaves as README
 * says: with no nftables table the kernel completes every source's TCP handshake, and the
 * app closes a source that has not knocked before sending a byte (no banner), while a
 * source that knocked (its SYNs fed to the door's real tracker) gets the SSH banner.
 */
describe('FIREWALL=off', function () {
  this.timeout(30_000);

  describe('configuration', () => {
    const base = minimalGatewayEnv();

    it('refuses FIREWALL=off alone, on one line naming FIREWALL_OFF_ACKNOWLEDGED', () => {
      const err = expectConfigError(() => loadGatewayConfig({ ...base(), FIREWALL: 'off' }));
      assert.equal(err.problems.length, 1);
      assert.match(err.problems[0]!, /^FIREWALL=off: refused unless FIREWALL_OFF_ACKNOWLEDGED=true confirms the host filters SSH_PORT 2222/);
      assert.equal(expectConfigError(() => loadGatewayConfig({ ...base(), FIREWALL: 'off', FIREWALL_OFF_ACKNOWLEDGED: 'false' })).problems.length, 1);
    });

    it('starts with FIREWALL=off once acknowledged, and nftables needs no acknowledgement', () => {
      assert.equal(loadGatewayConfig({ ...base(), FIREWALL: 'off', FIREWALL_OFF_ACKNOWLEDGED: 'true' }).firewall, 'off');
      assert.equal(loadGatewayConfig(base()).firewall, 'nftables');
    });
  });

  describe('the SSH port, acknowledged, with no host filter', () => {
    const KNOCKER = '127.0.0.1';
    const OUTSIDER = '127.0.0.2';
    const procs = new Procs();
    let tmp: ReturnType<typeof tempDir>;
    let door: KnockDoor;
    let gw: GatewayFixture;
    let sequence: number[];
    let feed: SynFeed | undefined;

    before(async () => {
      tmp = tempDir('nonstop-firewall-off-');
      const hostKey = writeKeyPair(tmp.dir, 'host', 'gateway-host');
      const broker = writeKeyPair(tmp.dir, 'broker', 'broker');
      const redis = await startRedis(procs, tmp.dir);
      sequence = [await freePort(), await freePort(), await freePort()];
      door = new KnockDoor(
        {
          spec: { mode: 'static', ports: sequence },
          stepTimeoutMs: 5000,
          sequenceTimeoutMs: 15_000,
          windowMs: 10_000,
          maxSources: 1000,
          budget: { attempts: 10, refillMs: 6000 },
          replayFile: join(tmp.dir, 'knock', 'replay.json'),
          capture: { tcpdump: '/nonexistent', device: 'lo', bufferKiB: 1024 },
          maxOpenWindows: 100,
        },
        { firewall: new NoFirewall(), metrics: gatewayMetrics(new Registry()), log: silentLogger(), capture: (t) => (feed = new SynFeed(t)) },
      );
      await door.start();
      gw = await startGateway({ hostKey, authorizedKeys: `${broker.publicKey}\n`, queuePort: redis.port, admit: (a) => door.admit(a) });
    });

    after(async () => {
      await gw?.close();
      door?.stop();
      await procs.stopAll();
      tmp?.cleanup();
    });

    it('completes an outsider\'s handshake and closes it before a byte; the knocked source gets the banner', async () => {
      const before = await probe(gw.port, KNOCKER);
      assert.deepEqual(before, { connected: true, data: '', closedByPeer: true }, 'before its knock the knocker is closed like anyone');

      feed!.knock(KNOCKER, sequence);
      const opened = await probe(gw.port, KNOCKER);
      assert.match(opened.data, /^SSH-2\.0-/, 'the knocked source is greeted');

      const outsider = await probe(gw.port, OUTSIDER);
      assert.deepEqual(outsider, { connected: true, data: '', closedByPeer: true });
    });
  });
});
