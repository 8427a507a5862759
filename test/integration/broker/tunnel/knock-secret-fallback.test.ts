import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { parseGatewaysFile, type GatewayTarget } from '../../../../services/broker/config';
import { TunnelKeeper } from '../../../../services/broker/tunnel/keeper';
import { timeSequence, windowOf, type TimeSpec } from '../../../../services/common/knock/sequence';
import { generateSshKeyPair } from '../../../../services/common/pki/ssh-keys';
import { memoryLogger } from '../../../support/logger';
import { freePort, listenOnPortBlock } from '../../../support/ports';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

const OLD = 'the-old-knock-secret-0123456789';
const NEW = 'the-new-knock-secret-9876543210';

/**
 * The broker's side of a knock-secret rotation with real sockets: the keeper reads its
 * secret file and `.previous` at every knock, knocks with the new secret first and, after
 * a knock that did not open the SSH port, with the previous one. The SSH port here stays
 * closed (no gateway), so every knock fails and the keeper alternates; the knocks' SYNs
 * land on loopback listeners, in order, and each is matched to the secret it came from.
 */
describe('the broker knocking during a knock-secret rotation (real sockets)', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let listeners: Server[];
  let seen: number[];
  let keeper: TunnelKeeper | undefined;

  async function listenOnRange(size: number): Promise<number> {
    const { base, servers } = await listenOnPortBlock(size, seen);
    listeners.push(...servers);
    return base;
  }

  beforeEach(() => {
    tmp = tempDir('nonstop-knock-rot-');
    listeners = [];
    seen = [];
  });
  afterEach(async () => {
    if (keeper) {
      keeper.stop();
      await waitFor('the keeper to stop', () => keeper?.state === 'stopped', 10_000, 20);
      keeper = undefined;
    }
    for (const srv of listeners) srv.close();
    tmp.cleanup();
  });

  /** Which secret each knock of `length` ports was derived from (by matching every window near now). */
  function secretsOfKnocks(spec: TimeSpec, ports: number[]): string[] {
    const out: string[] = [];
    for (let i = 0; i + spec.length <= ports.length; i += spec.length) {
      const knock = ports.slice(i, i + spec.length);
      const nonce = knock[0]! - spec.rangeStart;
      const n = windowOf(spec, Date.now());
      const from = [OLD, NEW].find((s) => [n - 1, n, n + 1].some((w) => timeSequence({ ...spec, secret: Buffer.from(s) }, w, nonce).join() === knock.join()));
      out.push(from === NEW ? 'new' : from === OLD ? 'old' : 'neither');
    }
    return out;
  }

  async function knocksOf(withPrevious: boolean, knocks: number): Promise<string[]> {
    const file = join(tmp.dir, 'knock-gw.secret');
    writeFileSync(file, NEW);
    if (withPrevious) writeFileSync(`${file}.previous`, OLD);
    const rangeStart = await listenOnRange(16);
    // The secret read at start is the old one: what the keeper knocks with must come from the files.
    const spec: TimeSpec = { mode: 'time', secret: Buffer.from(OLD), secretFile: file, length: 3, rangeStart, rangeEnd: rangeStart + 15, periodMs: 30_000 };
    // The entry as the broker reads it from gateways.json.
    const [parsed] = parseGatewaysFile(
      '/gateways.json',
      JSON.stringify({ gateways: [{ id: 'gw-test', host: '127.0.0.1', sshPort: await freePort(), httpsPort: await freePort(), hostKeyFingerprint: 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA', queuePasswordSha256: '0'.repeat(64), knock: { mode: 'time', secretFile: file, length: 3, portRange: `${rangeStart}-${rangeStart + 15}`, periodSeconds: 30 } }] }),
    );
    const target: GatewayTarget = { ...parsed!, knock: spec };
    const logs = memoryLogger();
    const key = generateSshKeyPair('broker-test').privateKey;
    keeper = new TunnelKeeper(
      target,
      { privateKeys: () => [key], user: 'broker', readyTimeoutMs: 2000, connectTimeoutMs: 1000, keepaliveIntervalMs: 1000, keepaliveCountMax: 3, knockGapMs: 1, knockSettleMs: 0, reconnect: { baseMs: 20, capMs: 50 }, queuePort: await freePort(), redisPort: await freePort() },
      logs.log,
    );
    keeper.start();
    await waitFor(`${knocks} whole knocks`, () => seen.length >= knocks * 3, 20_000, 20);
    keeper.stop();
    return secretsOfKnocks(spec, seen.slice(0, knocks * 3));
  }

  it('knocks with the new secret first, then with the previous one after a knock that did not open, alternating', async () => {
    assert.deepEqual(await knocksOf(true, 4), ['new', 'old', 'new', 'old']);
  });

  it('knocks with the new secret only once the previous one is retired (no .previous), though every knock fails', async () => {
    assert.deepEqual(await knocksOf(false, 3), ['new', 'new', 'new']);
  });
});
