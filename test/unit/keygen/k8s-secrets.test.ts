import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { keyLayout } from '../../../services/keygen/layout';
import { k8sSecretList, parseK8sSecretArgs, secretName } from '../../../services/keygen/k8s-secrets';
import { parseKeyDates } from '../../../services/common/pki/key-dates';
import { refreshAllKeyDates } from '../../../services/keygen/key-dates';
import { expectConfigError } from '../../support/config-error';
import { silentLogger } from '../../support/logger';
import { tempDir } from '../../support/tmp';

function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A key directory as nonstop-keygen leaves it, with each file's content naming the file. */
function keygenOutput(root: string): ReturnType<typeof keyLayout> {
  const L = keyLayout(root);
  for (const f of [
    L.pki.caCert, L.pki.caKey, L.pki.brokers,
    L.gateway.hostKey, L.gateway.authorizedKeys, L.gateway.queuePassword, L.gateway.knockSecret,
    L.broker.sshKey, L.broker.gatewaysFile, L.broker.caCert, L.broker.clientCert, L.broker.clientKey, L.broker.knockSecret('gw1'),
    L.core.serverCert, L.core.serverKey, L.core.caCert, L.core.crl, L.core.brokerNames, L.core.dataKeys,
  ]) put(f, `content of ${f.slice(root.length)}`);
  return L;
}

const decoded = (data: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

describe('nonstop-keygen k8s-secrets', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('nonstop-k8s-secrets-')));
  afterEach(() => tmp.cleanup());

  it('makes one Secret per tier holding exactly that tier\'s files, and none of the CA\'s', () => {
    const L = keygenOutput(tmp.dir);
    const list = k8sSecretList(L, { prefix: 'nonstop', namespace: 'edge' });
    assert.equal(list.kind, 'List');
    assert.deepEqual(list.items.map((s) => [s.kind, s.metadata.name, s.metadata.namespace, s.type]), [
      ['Secret', 'nonstop-gateway-keys', 'edge', 'Opaque'],
      ['Secret', 'nonstop-broker-keys', 'edge', 'Opaque'],
      ['Secret', 'nonstop-core-keys', 'edge', 'Opaque'],
    ]);
    const [gateway, broker, core] = list.items.map((s) => decoded(s.data));
    assert.deepEqual(gateway, {
      authorized_keys: 'content of /gateway/authorized_keys',
      'knock.secret': 'content of /gateway/knock.secret',
      'queue.password': 'content of /gateway/queue.password',
      ssh_host_ed25519_key: 'content of /gateway/ssh/ssh_host_ed25519_key',
    });
    assert.deepEqual(Object.keys(broker!).sort(), ['ca.crt', 'client.crt', 'client.key', 'gateways.json', 'id_ed25519', 'knock-gw1.secret']);
    assert.deepEqual(Object.keys(core!).sort(), ['brokers', 'ca.crl', 'ca.crt', 'data-keys.json', 'server.crt', 'server.key']);
    const everything = JSON.stringify(list);
    assert.ok(!everything.includes(Buffer.from('content of /pki/ca.key').toString('base64')), 'the CA key is in a Secret');
    assert.equal(secretName('nonstop', 'core'), 'nonstop-core-keys');
  });

  it('carries each tier\'s key-dates.json and every <file>.previous of a rotation\'s overlap, so kubectl apply brings a rotation to the pods', () => {
    const L = keygenOutput(tmp.dir);
    for (const f of [L.gateway.hostKey, L.gateway.queuePassword, L.broker.sshKey, L.broker.knockSecret('gw1')]) put(`${f}.previous`, `old ${f.slice(tmp.dir.length)}`);
    refreshAllKeyDates(L, 365, silentLogger());
    const [gateway, broker, core] = k8sSecretList(L, { prefix: 'nonstop' }).items.map((s) => decoded(s.data));
    assert.equal(gateway!['ssh_host_ed25519_key.previous'], 'old /gateway/ssh/ssh_host_ed25519_key');
    assert.equal(gateway!['queue.password.previous'], 'old /gateway/queue.password');
    assert.equal(broker!['id_ed25519.previous'], 'old /broker/id_ed25519');
    assert.equal(broker!['knock-gw1.secret.previous'], 'old /broker/knock-gw1.secret');
    // Each Secret's manifest is the file keygen wrote, and names only keys the same Secret
    // carries: mounted flat, every key it dates is beside it.
    for (const [tier, data] of [['gateway', gateway!], ['broker', broker!], ['core', core!]] as const) {
      assert.equal(data['key-dates.json'], readFileSync(join(L[tier].dir, 'key-dates.json'), 'utf8'), tier);
      const names = parseKeyDates(data['key-dates.json']).keys.map((k) => k.name);
      for (const n of names) assert.ok(n in data, `${tier}: key-dates.json dates ${n}, which the Secret lacks`);
      if (tier !== 'core') assert.ok(names.some((n) => n.endsWith('.previous')), `${tier}: no .previous dated`);
    }
  });

  it('keeps binary content intact and leaves the namespace out unless given', () => {
    const L = keygenOutput(tmp.dir);
    const bytes = Buffer.from([0, 255, 10, 13, 128]);
    writeFileSync(L.core.dataKeys, bytes);
    const list = k8sSecretList(L, { prefix: 'p' });
    const core = list.items.find((s) => s.metadata.name === 'p-core-keys')!;
    assert.deepEqual(Buffer.from(core.data['data-keys.json']!, 'base64'), bytes);
    for (const s of list.items) assert.equal('namespace' in s.metadata, false);
  });

  it('refuses an incomplete key directory, naming what is missing', () => {
    const L = keygenOutput(tmp.dir);
    rmSync(L.broker.clientKey);
    const err = expectConfigError(() => k8sSecretList(L, { prefix: 'nonstop' }));
    assert.deepEqual(err.problems, [`${L.broker.clientKey}: missing (run nonstop-keygen first)`]);
  });

  it('refuses two files of one tier that would share a Secret key', () => {
    const L = keygenOutput(tmp.dir);
    put(join(L.gateway.dir, 'extra', 'authorized_keys'), 'x');
    const err = expectConfigError(() => k8sSecretList(L, { prefix: 'nonstop' }));
    assert.match(err.problems[0]!, /a second file named authorized_keys/);
  });

  it('takes --prefix and --namespace, refusing names Kubernetes would refuse and unknown flags', () => {
    assert.deepEqual(parseK8sSecretArgs([]), { prefix: 'nonstop', namespace: undefined });
    assert.deepEqual(parseK8sSecretArgs(['--namespace', 'edge', '--prefix', 'prod']), { prefix: 'prod', namespace: 'edge' });
    expectConfigError(() => parseK8sSecretArgs(['--name', 'x']));
    expectConfigError(() => parseK8sSecretArgs(['--prefix']));
    const L = keygenOutput(tmp.dir);
    expectConfigError(() => k8sSecretList(L, { prefix: 'Bad_Name' }));
    expectConfigError(() => k8sSecretList(L, { prefix: 'ok', namespace: 'no/slash' }));
  });
});
