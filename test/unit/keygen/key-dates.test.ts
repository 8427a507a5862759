import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatKeyDates, KeyDatesError, parseKeyDates } from '../../../services/common/pki/key-dates';
import { generateSshKeyPair, publicKeyLine } from '../../../services/common/pki/ssh-keys';
import { saveBrokers } from '../../../services/keygen/brokers';
import { contentFingerprint, isTierKeyFile, nextKeyDates, refreshKeyDates } from '../../../services/keygen/key-dates';
import { keyLayout } from '../../../services/keygen/layout';
import { memoryLogger, silentLogger } from '../../support/logger';
import { tempDir } from '../../support/tmp';

const DAY = 86_400_000;
const T0 = new Date('2026-01-10T12:00:00.000Z');
const T1 = new Date('2026-03-01T08:30:00.000Z');
const file = (name: string, text: string, expiresAtMs?: number) => ({ name, content: Buffer.from(text), expiresAtMs });

describe('key-dates.json: the dates keygen gives keys that have none of their own', () => {
  it('stamps a new key with now, and notAfter with now + the lifetime', () => {
    const [k] = nextKeyDates([], [file('queue.password', 'secret-1')], T0, 365);
    assert.deepEqual(k, { name: 'queue.password', fingerprint: contentFingerprint(Buffer.from('secret-1')), createdAt: T0.toISOString(), notAfter: new Date(T0.getTime() + 365 * DAY).toISOString() });
  });

  it('keeps the dates of a key whose content did not change, and restamps one whose content did', () => {
    const first = nextKeyDates([], [file('queue.password', 'secret-1'), file('knock.secret', 'knock-1')], T0, 30);
    const same = nextKeyDates(first, [file('queue.password', 'secret-1'), file('knock.secret', 'knock-1')], T1, 30);
    assert.deepEqual(same, first);
    const changed = nextKeyDates(first, [file('queue.password', 'secret-2'), file('knock.secret', 'knock-1')], T1, 30);
    assert.equal(changed.find((k) => k.name === 'queue.password')!.createdAt, T1.toISOString());
    assert.equal(changed.find((k) => k.name === 'queue.password')!.notAfter, new Date(T1.getTime() + 30 * DAY).toISOString());
    assert.deepEqual(changed.find((k) => k.name === 'knock.secret'), first.find((k) => k.name === 'knock.secret'));
  });

  it('keeps the old key\'s age when a rotation moves it to <file>.previous, and dates only the new one now; drops it at retire', () => {
    const before = nextKeyDates([], [file('queue.password', 'old')], T0, 365);
    const overlap = nextKeyDates(before, [file('queue.password', 'new'), file('queue.password.previous', 'old')], T1, 365);
    assert.deepEqual(overlap.map((k) => [k.name, k.createdAt]), [['queue.password', T1.toISOString()], ['queue.password.previous', T0.toISOString()]]);
    const retired = nextKeyDates(overlap, [file('queue.password', 'new')], new Date(T1.getTime() + DAY), 365);
    assert.deepEqual(retired.map((k) => [k.name, k.createdAt]), [['queue.password', T1.toISOString()]]);
  });

  it('uses a key\'s own expiry when it is earlier than createdAt + lifetime, and the lifetime when it is later', () => {
    const soon = T0.getTime() + 10 * DAY;
    const late = T0.getTime() + 1000 * DAY;
    const [a, b] = nextKeyDates([], [file('a', 'x', soon), file('b', 'y', late)], T0, 365);
    assert.equal(a!.notAfter, new Date(soon).toISOString());
    assert.equal(b!.notAfter, new Date(T0.getTime() + 365 * DAY).toISOString());
  });

  it('names the content by a short hash, never the content', () => {
    const [k] = nextKeyDates([], [file('knock.secret', 'the-secret-itself')], T0, 1);
    assert.match(k!.fingerprint, /^sha256:[0-9a-f]{16}$/);
    assert.ok(!formatKeyDates({ version: 1, keys: [k!] }).includes('the-secret-itself'));
  });

  it('lists only the tier\'s keys (and their .previous), not certificates, derived files, the manifest or temp files', () => {
    for (const n of ['ssh_host_ed25519_key', 'ssh_host_ed25519_key.previous', 'queue.password', 'queue.password.previous', 'knock.secret']) assert.ok(isTierKeyFile('gateway', n), n);
    for (const n of ['authorized_keys', 'key-dates.json', 'queue.password.3fa2c1.tmp', 'server.key', 'queue.password.previous.previous']) assert.ok(!isTierKeyFile('gateway', n), n);
    for (const n of ['id_ed25519', 'id_ed25519.previous', 'knock-gw1.secret', 'knock-gw-2.secret.previous']) assert.ok(isTierKeyFile('broker', n), n);
    for (const n of ['client.key', 'gateways.json', 'ca.crt', 'id_ed25519.pub']) assert.ok(!isTierKeyFile('broker', n), n);
    for (const n of ['server.key', 'data-keys.json', 'ca.crl']) assert.ok(!isTierKeyFile('core', n), n);
  });

  it('parses what it formats, and refuses a manifest that is not one (typed error)', () => {
    const dates = { version: 1 as const, keys: nextKeyDates([], [file('queue.password', 's')], T0, 365) };
    assert.deepEqual(parseKeyDates(formatKeyDates(dates)), dates);
    const bad = [
      '{',
      JSON.stringify({ version: 2, keys: [] }),
      JSON.stringify({ version: 1, keys: [{ ...dates.keys[0], fingerprint: 'the-secret' }] }),
      JSON.stringify({ version: 1, keys: [{ ...dates.keys[0], notAfter: 'tomorrow' }] }),
      JSON.stringify({ version: 1, keys: [{ ...dates.keys[0], name: '../etc/passwd' }] }),
      JSON.stringify({ version: 1, keys: [dates.keys[0], dates.keys[0]] }),
    ];
    for (const text of bad) assert.throws(() => parseKeyDates(text), KeyDatesError, text);
  });
});

describe('refreshKeyDates on a key directory', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('nonstop-key-dates-')));
  afterEach(() => tmp.cleanup());

  const put = (path: string, text: string): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  const manifest = (dir: string) => parseKeyDates(readFileSync(join(dir, 'key-dates.json'), 'utf8')).keys;

  it('writes the tier\'s manifest, and an unchanged directory leaves the file untouched (same text, same mtime)', () => {
    const L = keyLayout(tmp.dir);
    put(L.gateway.hostKey, generateSshKeyPair('gw').privateKey);
    put(L.gateway.queuePassword, 'pw');
    put(L.gateway.knockSecret, 'ks');
    put(L.gateway.authorizedKeys, '');
    refreshKeyDates(L, 'gateway', 365, silentLogger(), T0);
    assert.deepEqual(manifest(L.gateway.dir).map((k) => [k.name, k.createdAt]), [
      ['knock.secret', T0.toISOString()], ['queue.password', T0.toISOString()], ['ssh_host_ed25519_key', T0.toISOString()],
    ]);
    const path = join(L.gateway.dir, 'key-dates.json');
    const text = readFileSync(path, 'utf8');
    const mtime = statSync(path).mtimeMs;
    refreshKeyDates(L, 'gateway', 365, silentLogger(), T1);
    assert.equal(readFileSync(path, 'utf8'), text);
    assert.equal(statSync(path).mtimeMs, mtime);
    // Positive control from the same place: a changed key does rewrite it.
    put(L.gateway.queuePassword, 'pw2');
    refreshKeyDates(L, 'gateway', 365, silentLogger(), T1);
    assert.equal(manifest(L.gateway.dir).find((k) => k.name === 'queue.password')!.createdAt, T1.toISOString());
  });

  it('dates the host key\'s .previous beside it (nested ssh/ directory) with the old key\'s age', () => {
    const L = keyLayout(tmp.dir);
    put(L.gateway.hostKey, 'old host key');
    refreshKeyDates(L, 'gateway', 365, silentLogger(), T0);
    renameSync(L.gateway.hostKey, `${L.gateway.hostKey}.previous`);
    put(L.gateway.hostKey, 'new host key');
    refreshKeyDates(L, 'gateway', 365, silentLogger(), T1);
    assert.deepEqual(manifest(L.gateway.dir).map((k) => [k.name, k.createdAt]), [['ssh_host_ed25519_key', T1.toISOString()], ['ssh_host_ed25519_key.previous', T0.toISOString()]]);
  });

  it('takes the earlier of createdAt + lifetime and the broker key\'s expiry-time= from pki/brokers.json', () => {
    const L = keyLayout(tmp.dir);
    const key = generateSshKeyPair('broker').privateKey;
    put(L.broker.sshKey, key);
    put(L.broker.knockSecret('gw1'), 'ks');
    mkdirSync(L.pki.dir, { recursive: true });
    saveBrokers(L.pki.brokers, [{ name: 'broker', sshPublicKey: publicKeyLine(key, 'broker'), certSerial: '01', expiryTime: '20260201Z' }]);
    refreshKeyDates(L, 'broker', 365, silentLogger(), T0);
    const keys = manifest(L.broker.dir);
    assert.equal(keys.find((k) => k.name === 'id_ed25519')!.notAfter, '2026-02-01T00:00:00.000Z');
    // The knock secret has no expiry-time: its lifetime alone.
    assert.equal(keys.find((k) => k.name === 'knock-gw1.secret')!.notAfter, new Date(T0.getTime() + 365 * DAY).toISOString());
    saveBrokers(L.pki.brokers, [{ name: 'broker', sshPublicKey: publicKeyLine(key, 'broker'), certSerial: '01', expiryTime: '20990101Z' }]);
    refreshKeyDates(L, 'broker', 365, silentLogger(), T0);
    assert.equal(manifest(L.broker.dir).find((k) => k.name === 'id_ed25519')!.notAfter, new Date(T0.getTime() + 365 * DAY).toISOString());
  });

  it('replaces a manifest it cannot read with one dated now, saying so in one line', () => {
    const L = keyLayout(tmp.dir);
    put(L.gateway.queuePassword, 'pw');
    put(join(L.gateway.dir, 'key-dates.json'), '{ half written');
    const { log, lines } = memoryLogger();
    refreshKeyDates(L, 'gateway', 365, log, T1);
    assert.deepEqual(manifest(L.gateway.dir).map((k) => [k.name, k.createdAt]), [['queue.password', T1.toISOString()]]);
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
  });
});
