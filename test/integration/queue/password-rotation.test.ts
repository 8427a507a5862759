import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { gatewayAclRules } from '../../../services/broker/redis/config';
import { sha256Hex } from '../../../services/common/pki/digest';
import { PROTOCOL_VERSION, queueKeys } from '../../../services/common/queue/keys';
import { encodeReply, type ReplyEnvelope } from '../../../services/common/queue/envelope';
import { Lane } from '../../../services/gateway/queue/lane';
import { QueuePasswords } from '../../../services/gateway/queue/passwords';
import { StandInTunnel } from '../../support/stand-in-tunnel';
import { memoryLogger, silentLogger } from '../../support/logger';
import { TestRedis } from '../../support/redis-server';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

const GW = 'gw-a';
const USER = `gateway-${GW}`;


const secret = (): string => randomBytes(24).toString('base64url');

/**
 * Queue-password rotation against a real redis-server (issue 15.5): what the broker does
 * (ACL SETUSER with every listed hash, the same rules as broker/redis/gateway-users.ts) and
 * what the gateway's lane does (gateway/queue/lane.ts with QueuePasswords following real
 * files: new-first AUTH, fallback to `.previous`, moving its connections on a change).
 */
describe('queue password rotation (real redis-server)', function () {
  this.timeout(60_000);

  let redis: TestRedis;
  let admin: Redis;
  let tmp: { dir: string; cleanup: () => void };
  let file: string;
  const cleanups: (() => void)[] = [];

  beforeEach(async () => {
    redis = await TestRedis.start({ gateways: [GW], inspector: true });
    admin = await redis.client('inspector');
    tmp = tempDir('nonstop-qpw-');
    file = join(tmp.dir, 'queue.password');
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0)) c();
    await redis.stop();
    tmp.cleanup();
  });

  /** The broker's side: the gateway's Redis user accepts exactly these passwords. */
  async function accept(...passwords: string[]): Promise<void> {
    await admin.call('ACL', 'SETUSER', USER, 'reset', ...gatewayAclRules({ id: GW, username: USER, passwordSha256s: passwords.map(sha256Hex) }));
  }

  /** A fresh connection's AUTH as the gateway's user: 'OK' or the error code. */
  async function authAs(password: string): Promise<string> {
    const c = await redis.client('anonymous');
    try {
      return String(await c.call('AUTH', USER, password));
    } catch (err) {
      return (err as Error).message.split(' ')[0]!;
    } finally {
      c.disconnect();
    }
  }

  function writePasswords(current: string, previous?: string): void {
    writeFileSync(file, `${current}\n`);
    if (previous === undefined) rmSync(`${file}.previous`, { force: true });
    else writeFileSync(`${file}.previous`, `${previous}\n`);
  }

  async function startLane(passwords: QueuePasswords): Promise<Lane> {
    const lane = new Lane(new StandInTunnel(`tunnel-${randomUUID().slice(0, 8)}`, redis.port).tunnel, GW, { username: USER, passwords }, { commandTimeoutMs: 2000, pingIntervalMs: 200, pingMisses: 3 }, silentLogger());
    cleanups.push(() => lane.close());
    await lane.connect();
    return lane;
  }

  /** The lane works both ways: an XADD lands in the stream, a reply published reaches it. */
  async function assertServes(lane: Lane): Promise<void> {
    await waitFor('the lane to be ready', () => lane.ready, 10_000, 20);
    const before = await admin.xlen(queueKeys.requests(GW));
    await lane.send({ v: PROTOCOL_VERSION, id: randomUUID(), gw: GW, budgetMs: 1000, method: 'GET', collection: 'notes', recordId: 'x', token: 't' });
    assert.equal(await admin.xlen(queueKeys.requests(GW)), before + 1);
    const reply: ReplyEnvelope = { v: PROTOCOL_VERSION, id: randomUUID(), status: 200, body: {} };
    const got = new Promise<ReplyEnvelope>((resolve) => lane.on('reply', (r) => r.id === reply.id && resolve(r)));
    await admin.publish(queueKeys.replies(GW), encodeReply(reply));
    assert.equal((await got).id, reply.id);
  }

  async function subscriberIds(): Promise<string[]> {
    const list = String(await admin.call('CLIENT', 'LIST'));
    return list
      .split('\n')
      .filter((l) => l.includes(`user=${USER}`) && /\bsub=1\b/.test(l))
      .map((l) => /\bid=(\d+)/.exec(l)![1]!);
  }

  it('keeps connections authenticated with a password when ACL SETUSER adds a second one and then removes the first; a new AUTH with the removed one is refused', async () => {
    const [oldPw, newPw] = [secret(), secret()];
    await accept(oldPw);
    const cmd = await redis.client({ username: USER, password: oldPw });
    const sub = await redis.client({ username: USER, password: oldPw });
    await sub.subscribe(queueKeys.replies(GW));
    const received: string[] = [];
    sub.on('message', (_c: string, m: string) => received.push(m));

    await accept(newPw, oldPw);
    assert.equal(await authAs(newPw), 'OK');
    assert.equal(await authAs(oldPw), 'OK');
    await accept(newPw);
    // Refused for a new AUTH, with the positive control from the same place.
    assert.equal(await authAs(oldPw), 'WRONGPASS');
    assert.equal(await authAs(newPw), 'OK');
    // The connections opened with it are still there and still served.
    assert.equal(await cmd.ping(), 'PONG');
    await admin.publish(queueKeys.replies(GW), 'still-subscribed');
    await waitFor('the message on the old subscription', () => received.includes('still-subscribed'), 5000, 20);
  });

  it('leaves a connection authenticated as before when a re-AUTH with a password the user does not accept is refused', async () => {
    const [oldPw, newPw] = [secret(), secret()];
    await accept(oldPw);
    const cmd = await redis.client({ username: USER, password: oldPw });
    await assert.rejects(cmd.call('AUTH', USER, newPw), /WRONGPASS/);
    assert.equal(await cmd.ping(), 'PONG');
  });

  it('authenticates with the previous password when the broker has not loaded the new one yet (WRONGPASS for the new)', async () => {
    const [oldPw, newPw] = [secret(), secret()];
    await accept(oldPw);
    writePasswords(newPw, oldPw);
    const passwords = new QueuePasswords(file, [newPw], silentLogger());
    passwords.check();
    assert.deepEqual(passwords.list(), [newPw, oldPw]);
    const lane = await startLane(passwords);
    await assertServes(lane);
    assert.equal(lane.onCurrentPassword(), false);

    // The broker reloads (both hashes): the lane moves to the new password by itself.
    await accept(newPw, oldPw);
    await waitFor('the lane on the new password', () => lane.onCurrentPassword(), 10_000, 20);
    await assertServes(lane);
  });

  it('moves its command and subscribed connections to the new password when the file changes, so the old one can be retired without a failed request', async () => {
    const [oldPw, newPw] = [secret(), secret()];
    await accept(oldPw);
    writePasswords(oldPw);
    const passwords = new QueuePasswords(file, [oldPw], silentLogger());
    const lane = await startLane(passwords);
    await assertServes(lane);
    assert.equal(lane.onCurrentPassword(), true);
    const [subBefore] = await subscriberIds();
    assert.ok(subBefore);

    // rotate: the broker accepts both, then the gateway's files change.
    await accept(newPw, oldPw);
    writePasswords(newPw, oldPw);
    passwords.check();
    await waitFor('the lane on the new password', () => lane.onCurrentPassword(), 10_000, 20);
    // make-before-break: one subscriber, not the one from before.
    await waitFor('one subscriber, a new one', async () => {
      const ids = await subscriberIds();
      return ids.length === 1 && ids[0] !== subBefore;
    }, 10_000, 50);
    assert.ok(lane.ready);

    // retire: the gateway's `.previous` goes, the broker accepts the new password only.
    writePasswords(newPw);
    passwords.check();
    assert.deepEqual(passwords.list(), [newPw]);
    await accept(newPw);
    assert.equal(await authAs(oldPw), 'WRONGPASS');
    assert.equal(await authAs(newPw), 'OK');
    await assertServes(lane);
    // A reconnect (the tunnel re-established) authenticates with the new password.
    await admin.call('CLIENT', 'KILL', 'USER', USER);
    await waitFor('the lane to notice the cut', () => !lane.ready, 10_000, 20);
    await assertServes(lane);
  });

  it('refuses an emptied password file with one log line and keeps the passwords it had', () => {
    const pw = secret();
    writePasswords(pw);
    const { log, lines } = memoryLogger();
    const passwords = new QueuePasswords(file, [pw], log);
    passwords.check();
    let changes = 0;
    passwords.on('changed', () => changes++);
    writeFileSync(file, '\n');
    passwords.check();
    passwords.check();
    assert.deepEqual(passwords.list(), [pw]);
    assert.equal(changes, 0);
    assert.equal(lines.filter((l) => l.message === 'queue password file changed but cannot be used; keeping the passwords in use').length, 1);
    // Positive control: a valid new text is taken.
    const next = secret();
    writeFileSync(file, next);
    passwords.check();
    assert.deepEqual(passwords.list(), [next]);
    assert.equal(changes, 1);
  });
});
