import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { Duplex } from 'node:stream';
import { Client } from 'ssh2';
import { Redis } from 'ioredis';
import { channelConnector } from '../../../../services/gateway/tunnel/channel-connector';
import type { Tunnel } from '../../../../services/gateway/tunnel/tunnel';
import { Procs, startGateway, startRedis, writeKeyPair, type GatewayFixture } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

const QUEUE_PORT = 6379;

/**
 * The gateway's Redis client on a broker's tunnel (tunnel/channel-connector.ts), against the
 * gateway's real SSH server and an ssh2 client standing in for the broker, whose channel
 * handling the test controls. A broker whose Redis refuses a connection accepts the channel
 * and closes it at once: both packets usually reach the gateway in one read, so the channel
 * closes before the Redis client has listened for it.
 */
describe('ioredis over tunnel channels, against the gateway SSH server', function () {
  this.timeout(60_000);
  const procs = new Procs();
  const files = tempDir('nonstop-channel-connector-');
  let gateway: GatewayFixture;
  let broker: Client;
  let redisPort: number;
  /** Channels the broker accepts and closes in the same breath before it connects any. */
  let refuseNext = 0;
  let refused = 0;

  before(async () => {
    redisPort = (await startRedis(procs, files.dir)).port;
    const hostKey = writeKeyPair(files.dir, 'host');
    const key = writeKeyPair(files.dir, 'broker');
    gateway = await startGateway({ hostKey, authorizedKeys: key.publicKey, queuePort: QUEUE_PORT });
    broker = new Client();
    broker.on('tcp connection', (_info, accept) => {
      const channel = accept();
      if (refuseNext > 0) {
        refuseNext--;
        refused++;
        channel.close();
        return;
      }
      const redis = netConnect(redisPort, '127.0.0.1');
      redis.on('error', () => channel.close());
      channel.on('close', () => redis.destroy());
      redis.pipe(channel).pipe(redis);
    });
    await new Promise<void>((resolve, reject) => {
      broker.once('ready', () => broker.forwardIn('127.0.0.1', QUEUE_PORT, (err) => (err ? reject(err) : resolve())));
      broker.once('error', reject);
      broker.connect({ host: '127.0.0.1', port: gateway.port, username: 'broker', privateKey: key.privateKey });
    });
    await waitFor('the tunnel', () => gateway.tunnels[0], 10_000, 20);
  });

  after(async () => {
    broker?.end();
    await gateway?.close();
    await procs.stopAll();
    files.cleanup();
  });

  const client = (): Redis =>
    new Redis({ Connector: channelConnector(gateway.tunnels[0]!), enableReadyCheck: false, disableClientInfo: true, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 });

  it('carries commands through a channel (positive control)', async () => {
    const r = client();
    try {
      await r.connect();
      assert.equal(await r.ping(), 'PONG');
    } finally {
      r.disconnect();
    }
  });

  it('reconnects through a new channel after the broker closed each of several as it opened them, instead of keeping a dead one', async () => {
    refuseNext = 5;
    refused = 0;
    const r = client();
    r.on('error', () => undefined);
    try {
      await r.connect().catch(() => undefined);
      // Answers only once a channel that reaches Redis is its connection.
      const pong = await waitFor('a PING answered through a live channel', () => r.ping().catch(() => undefined), 20_000, 100);
      assert.equal(pong, 'PONG');
      assert.equal(refused, 5, 'the broker did not close the first channels: the test did not exercise them');
    } finally {
      r.disconnect();
    }
  });

  /**
   * When a channel's close arrives in the same read as its opening (a busy gateway, a broker
   * whose Redis refused at once), ssh2 ends its read side and emits 'close' on the ticks that
   * follow the first read, before ioredis's own "ready" callback. Built here exactly as ssh2
   * does it (emitClose off; 'close' emitted on 'end'), so the order is certain.
   */
  it("reconnects when a channel's close overtakes ioredis's ready callback", async () => {
    let closedEarly = 0;
    const tunnel = {
      id: 'stand-in',
      openChannel: async (): Promise<Duplex> => {
        if (closedEarly < 3) {
          closedEarly++;
          const channel = new Duplex({ read: () => undefined, write: (_c, _e, cb: () => void) => cb(), emitClose: false });
          channel.push(null);
          channel.once('end', () => channel.emit('close'));
          return channel;
        }
        const socket = netConnect(redisPort, '127.0.0.1');
        await once(socket, 'connect');
        return socket;
      },
    } as unknown as Tunnel;
    const r = new Redis({ Connector: channelConnector(tunnel), enableReadyCheck: false, disableClientInfo: true, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 });
    r.on('error', () => undefined);
    try {
      await r.connect().catch(() => undefined);
      const pong = await waitFor('a PING answered once a live connection replaced the closed channels', () => r.ping().catch(() => undefined), 10_000, 100);
      assert.equal(pong, 'PONG');
      assert.equal(closedEarly, 3);
    } finally {
      r.disconnect();
    }
  });
});
