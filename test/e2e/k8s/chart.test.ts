import assert from 'node:assert/strict';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCa, issueCertificate } from '../../../services/common/pki/certificates';
import { readJsonResponse, type JsonResponse } from '../../support/http-response';
import { sharedCluster, run, type K8sCluster } from '../../support/k8s/cluster';
import { keygenSecrets } from '../../support/k8s/keys';
import { REPO_ROOT, type ImageSet } from '../../support/stack/build';
import { testImages, TEST_TAG } from '../../support/stack/fixture';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

const CHART = join(REPO_ROOT, 'deploy', 'helm', 'nonstop');
const NS = 'nonstop-e2e';
const RELEASE = 'e2e';
const FULLNAME = 'e2e-nonstop';
const STORAGE_CLASS = 'nonstop-e2e-hostpath';
const PV_NAME = 'nonstop-e2e-core-data';
const PV_DIR = '/var/lib/nonstop-k8s/e2e-pv/core-data';
// The gateway binds these on the node's address (an empty bridge of this machine) only.
const PORTS = { http: 24080, https: 24443, ssh: 24222, app: 24081, metrics: 24464 };
// Outside the ephemeral range, as the chart's default: the gateway's table drops these on the host.
const KNOCK_RANGE = '61000-61999';
const UPGRADE_TAG = `${TEST_TAG}-k8s-upgrade`;
const GATEWAY_TABLE = 'nonstop_gateway';

interface KubeList<T> {
  items: T[];
}
interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string; hostNetwork?: boolean; containers: { image: string }[] };
  status: { phase?: string; conditions?: { type: string; status: string }[] };
}
interface NetPolPeer {
  podSelector?: { matchLabels?: Record<string, string> };
  ipBlock?: { cidr: string; except?: string[] };
  namespaceSelector?: unknown;
}
interface NetPolPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}
interface NetPol {
  metadata: { name: string };
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes?: string[];
    ingress?: { from?: NetPolPeer[]; ports?: NetPolPort[] }[];
    egress?: { to?: NetPolPeer[]; ports?: NetPolPort[] }[];
  };
}

const isReady = (p: Pod): boolean => p.status.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** HTTPS to the gateway's host port at the node's address, trusting only the test's CA. */
class NodeApi {
  private readonly agent: Agent;
  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly ca: string,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 8, ca });
  }

  send(method: string, path: string, token: string, body?: unknown): Promise<JsonResponse> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (text !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
      const req = request({ host: this.host, port: this.port, method, path, headers, agent: this.agent, timeout: 20_000 }, (res) => readJsonResponse(res).then(resolve, reject));
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.end(text);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

describe('Helm chart deploy/helm/nonstop on a real single-node Kubernetes', function () {
  let cluster: K8sCluster;
  let images: ImageSet;
  let api: NodeApi;
  let token: string;
  let values: string[];

  const helmValues = (tag: string): string[] => [
    '--set', 'image.prefix=nonstop',
    '--set', `image.tag=${tag}`,
    // Imported into the node's containerd; there is no registry to pull from.
    '--set', 'image.pullPolicy=Never',
    '--set', `core.variant=${images.coreTarget}`,
    '--set', `core.persistence.storageClassName=${STORAGE_CLASS}`,
    '--set', 'core.persistence.size=1Gi',
    // The test removes the claim with the release, to show nothing is left; the chart keeps it by default.
    '--set', 'core.persistence.retentionPolicy.whenDeleted=Delete',
    '--set', `gateway.ports.http=${PORTS.http}`,
    '--set', `gateway.ports.https=${PORTS.https}`,
    '--set', `gateway.ports.ssh=${PORTS.ssh}`,
    '--set', `gateway.ports.app=${PORTS.app}`,
    '--set', `gateway.ports.metrics=${PORTS.metrics}`,
    '--set', `gateway.knock.portRange=${KNOCK_RANGE}`,
    // Brokers' knocks reach the node over the pod bridge.
    '--set', `gateway.knock.interface=${cluster.podBridge}`,
    '--set', `gateway.tls.existingSecret=${FULLNAME}-gateway-tls`,
    '--set', `gateway.tlsNames={${cluster.nodeIp}}`,
    '--set', `networkPolicy.gatewayCIDRs={${cluster.nodeIp}/32}`,
  ];

  const releasePods = async (): Promise<Pod[]> => (await cluster.json<KubeList<Pod>>(['-n', NS, 'get', 'pods', '-l', `app.kubernetes.io/instance=${RELEASE}`])).items;
  const podOf = async (component: string): Promise<string> => {
    const p = (await releasePods()).find((x) => x.metadata.labels?.['app.kubernetes.io/component'] === component && isReady(x));
    if (!p) throw new Error(`no Ready ${component} pod`);
    return p.metadata.name;
  };
  const hostTable = (): ReturnType<typeof run> => run('nft', ['list', 'table', 'inet', GATEWAY_TABLE]);

  before(async function () {
    // Cold: the Kubernetes compile (~23 min, once per machine) and the image builds.
    this.timeout(3_600_000);
    const t0 = Date.now();
    const took = (what: string, since: number): void => void process.stderr.write(`      ${what}: ${((Date.now() - since) / 1000).toFixed(1)} s\n`);
    images = await testImages();
    const tCluster = Date.now();
    cluster = await sharedCluster();
    took('cluster start', tCluster);
    const tImport = Date.now();
    for (const ref of [images.gateway, images.broker, images.core]) await cluster.importImage(ref);
    took('image import', tImport);

    // The gateway's pod is not "restricted" (host network, NET_ADMIN/NET_RAW), so the
    // release's namespace admits privileged pods; broker and core are checked against
    // "restricted" separately below.
    await cluster.k(['create', 'namespace', NS]);
    await cluster.k(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=privileged']);
    await cluster.k(['label', 'node', cluster.nodeName, 'nonstop.dev/edge=true', '--overwrite']);

    // Keys: nonstop-keygen, then its Secrets; the node's address is the gateway's host.
    const secrets = await keygenSecrets(images.core, NS, { gatewayHost: cluster.nodeIp, sshPort: PORTS.ssh, knockPortRange: KNOCK_RANGE, coreNames: ['core'] });
    await cluster.k(['apply', '-f', '-'], { input: secrets });
    // The public certificate for the node's address, from a CA only this test trusts.
    const ca = await createCa('nonstop e2e k8s CA');
    const leaf = await issueCertificate(ca, { commonName: cluster.nodeIp, altNames: [cluster.nodeIp], usage: 'server' });
    // kubectl reads them from files: a directory only root can read, removed at once.
    const tls = tempDir('nonstop-k8s-tls-');
    try {
      writeFileSync(join(tls.dir, 'tls.crt'), leaf.certPem, { mode: 0o600 });
      writeFileSync(join(tls.dir, 'tls.key'), leaf.keyPem, { mode: 0o600 });
      await cluster.k(['-n', NS, 'create', 'secret', 'tls', `${FULLNAME}-gateway-tls`, `--cert=${join(tls.dir, 'tls.crt')}`, `--key=${join(tls.dir, 'tls.key')}`]);
    } finally {
      tls.cleanup();
    }

    // No storage provisioner in this cluster: a volume on this machine for core's claim.
    // hostPath volumes get no fsGroup ownership, so the directory is core's uid already.
    rmSync(PV_DIR, { recursive: true, force: true });
    mkdirSync(PV_DIR, { recursive: true, mode: 0o700 });
    chownSync(PV_DIR, 10001, 10001);
    await cluster.k(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: PV_NAME },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: STORAGE_CLASS,
          hostPath: { path: PV_DIR, type: 'Directory' },
        },
      }),
    });

    values = helmValues(TEST_TAG);
    const tInstall = Date.now();
    const installed = await cluster.helm(['install', RELEASE, CHART, '-n', NS, '--wait', '--timeout', '10m', ...values], { timeoutMs: 700_000 });
    if (installed.code !== 0) {
      const pods = await cluster.kubectl(['-n', NS, 'get', 'pods', '-o', 'wide']);
      const events = await cluster.kubectl(['-n', NS, 'get', 'events', '--sort-by=.lastTimestamp']);
      throw new Error(`helm install failed: ${installed.stderr}\n${pods.stdout}\n${events.stdout.slice(-4000)}`);
    }
    took('helm install --wait', tInstall);
    took('before all (images, cluster, keys, install)', t0);
    api = new NodeApi(cluster.nodeIp, PORTS.https, ca.certPem);
    const core = await podOf('core');
    token = (await cluster.k(['-n', NS, 'exec', core, '--', 'nonstop-admin', 'token', 'create', '--collections', 'notes', '--scopes', 'read,write'])).trim();
  });

  after(async function () {
    this.timeout(300_000);
    api?.close();
    if (!cluster) return;
    // Whatever a failed test left: the release, the namespace, the volume and its directory.
    await cluster.helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '3m']);
    await cluster.kubectl(['delete', 'namespace', NS, '--wait=true', '--timeout=120s']);
    await cluster.kubectl(['delete', 'pv', PV_NAME, '--wait=true', '--timeout=60s']);
    await cluster.kubectl(['label', 'node', cluster.nodeName, 'nonstop.dev/edge-']);
    rmSync(dirname(PV_DIR), { recursive: true, force: true });
  });

  it('passes helm lint with its defaults and with this install\'s values; the schema refuses a single broker', async () => {
    for (const args of [[], values]) {
      const lint = await cluster.helm(['lint', CHART, '--strict', ...args]);
      assert.equal(lint.code, 0, `helm lint ${args.length ? 'with values' : 'defaults'}: ${lint.stdout}${lint.stderr}`);
      assert.doesNotMatch(lint.stdout, /\[(WARNING|ERROR)\]/);
    }
    // The positive control: the linter does read values.schema.json.
    const one = await cluster.helm(['lint', CHART, '--set', 'broker.replicas=1']);
    assert.notEqual(one.code, 0);
    assert.match(one.stdout, /broker\/replicas.*minimum/);
  });

  it('installs with every pod Ready: one gateway on the edge node in its network, two brokers, one core', async () => {
    const pods = await releasePods();
    const by = (c: string): Pod[] => pods.filter((p) => p.metadata.labels?.['app.kubernetes.io/component'] === c);
    assert.equal(by('gateway').length, 1, 'gateway pods');
    assert.equal(by('broker').length, 2, 'broker pods');
    assert.equal(by('core').length, 1, 'core pods');
    assert.equal(pods.length, 4, pods.map((p) => p.metadata.name).join(', '));
    for (const p of pods) assert.ok(isReady(p), `${p.metadata.name} not Ready: ${JSON.stringify(p.status.conditions)}`);
    assert.equal(by('gateway')[0]!.spec.hostNetwork, true);
    assert.equal(by('gateway')[0]!.spec.nodeName, cluster.nodeName);
    // The gateway's table is in the host's ruleset, guarding its own ports only.
    const table = await hostTable();
    assert.equal(table.code, 0, `no ${GATEWAY_TABLE} table on the host: ${table.stderr}`);
    assert.match(table.stdout, new RegExp(`tcp dport \\{ ${PORTS.ssh}, ${KNOCK_RANGE} \\} drop`));
    assert.match(table.stdout, /policy accept;/);
  });

  it('stores a record sent over HTTPS to the node address and reads it back through the gateway', async function () {
    this.timeout(120_000);
    const record = { title: 'through the chart', body: 'gateway host port, broker, core', tags: ['k8s'] };
    const created = await waitFor('a broker tunnel to carry the first request', async () => {
      const res = await api.send('POST', '/v1/records/notes', token, record);
      return res.status === 503 ? undefined : res;
    }, 90_000, 1000);
    assert.equal(created.status, 201, created.text);
    const id = (created.json as { id: string }).id;
    const read = await api.send('GET', `/v1/records/notes/${id}`, token);
    assert.equal(read.status, 200, read.text);
    assert.deepEqual((read.json as { data: unknown }).data, record);
  });

  it('keeps every acknowledged write through helm upgrade to a new image tag under write load', async function () {
    this.timeout(1_200_000);
    for (const ref of [images.gateway, images.broker, images.core]) {
      const name = ref.slice(0, ref.lastIndexOf(':'));
      await cluster.tagImage(ref, `${name}:${UPGRADE_TAG}`);
    }
    const acked: { id: string; title: string }[] = [];
    let failed = 0;
    let n = 0;
    let writing = true;
    const writer = async (w: number): Promise<void> => {
      while (writing) {
        const title = `upgrade w${w} #${n++}`;
        try {
          const res = await api.send('POST', '/v1/records/notes', token, { title });
          if (res.status === 201) acked.push({ id: (res.json as { id: string }).id, title });
          else failed++;
        } catch {
          failed++;
        }
        await sleep(50);
      }
    };
    const writers = [0, 1, 2].map((w) => writer(w));
    await waitFor('writes acknowledged before the upgrade', () => acked.length >= 10, 60_000, 200);
    const before = acked.length;
    const upgraded = await cluster.helm(['upgrade', RELEASE, CHART, '-n', NS, '--wait', '--timeout', '15m', ...helmValues(UPGRADE_TAG)], { timeoutMs: 960_000 });
    // Writes go on after the rollout: the path must work again on the new pods (asserted
    // last, so that lost records, which would also stop new writes, are named first).
    const atUpgradeEnd = acked.length;
    const resumed = await waitFor('writes acknowledged after the upgrade', () => acked.length >= atUpgradeEnd + 10, 120_000, 200).then(
      () => true,
      () => false,
    );
    writing = false;
    await Promise.all(writers);
    assert.equal(upgraded.code, 0, `helm upgrade failed: ${upgraded.stderr}`);
    // helm's wait ends when the new pods are Ready; an old broker may still be draining
    // (up to its 25 s grace), so the release's pods are read once the old ones are gone.
    const upgradedPods = (ps: Pod[]): boolean => ps.length === 4 && ps.every((p) => isReady(p) && p.spec.containers.every((c) => c.image.endsWith(`:${UPGRADE_TAG}`)));
    let pods = await releasePods();
    await waitFor('only the upgraded pods, all Ready', async () => upgradedPods((pods = await releasePods())), 120_000, 1000).catch(() => undefined);
    assert.equal(pods.length, 4, pods.map((p) => p.metadata.name).join(', '));
    for (const p of pods) {
      assert.ok(isReady(p), `${p.metadata.name} not Ready after the upgrade`);
      for (const c of p.spec.containers) assert.match(c.image, new RegExp(`:${UPGRADE_TAG}$`), `${p.metadata.name} runs ${c.image}`);
    }
    // Every write that was answered 201 must be there, with what was sent.
    const lost: string[] = [];
    for (const a of acked) {
      const res = await api.send('GET', `/v1/records/notes/${a.id}`, token);
      if (res.status !== 200 || (res.json as { data?: { title?: string } }).data?.title !== a.title) lost.push(`${a.id} (${a.title}): ${res.status}`);
    }
    process.stderr.write(`      upgrade under load: ${acked.length} acknowledged (${before} before it), ${failed} not acknowledged, ${lost.length} lost\n`);
    assert.deepEqual(lost, [], `${lost.length} of ${acked.length} acknowledged writes lost`);
    assert.ok(resumed, `fewer than 10 writes acknowledged in 120 s after the upgrade (${acked.length - atUpgradeEnd})`);
  });

  it('runs broker and core as Pod Security "restricted" pods, which refuses the gateway (positive control)', async () => {
    const restricted = `${NS}-restricted`;
    await cluster.kubectl(['delete', 'namespace', restricted, '--wait=true']);
    await cluster.k(['create', 'namespace', restricted]);
    try {
      await cluster.k(['label', 'namespace', restricted, 'pod-security.kubernetes.io/enforce=restricted']);
      // PodSecurity enforces on Pods (on workloads it only warns): the pod templates of the
      // release's workloads, as the apiserver stored them, submitted as Pods.
      const admit = async (component: string, kind: string): Promise<{ code: number; stderr: string }> => {
        const obj = await cluster.json<{ spec: { template: { spec: { volumes?: unknown[] } }; volumeClaimTemplates?: { metadata: { name: string } }[] } }>(['-n', NS, 'get', kind, `${FULLNAME}-${component}`]);
        // A StatefulSet adds its claims' volumes to each pod; a bare Pod names them itself.
        const claims = (obj.spec.volumeClaimTemplates ?? []).map((c) => ({ name: c.metadata.name, persistentVolumeClaim: { claimName: `${c.metadata.name}-psa` } }));
        const spec = { ...obj.spec.template.spec, volumes: [...(obj.spec.template.spec.volumes ?? []), ...claims] };
        const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: `psa-${component}`, namespace: restricted }, spec };
        return cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(pod) });
      };
      const broker = await admit('broker', 'deployment');
      assert.equal(broker.code, 0, `broker refused under restricted: ${broker.stderr}`);
      const core = await admit('core', 'statefulset');
      assert.equal(core.code, 0, `core refused under restricted: ${core.stderr}`);
      const gateway = await admit('gateway', 'daemonset');
      assert.notEqual(gateway.code, 0, 'the gateway pod was admitted under restricted: the check proves nothing');
      assert.match(gateway.stderr, /violates PodSecurity "restricted/);
    } finally {
      await cluster.kubectl(['delete', 'namespace', restricted, '--wait=false']);
    }
  });

  it('allows exactly broker -> core and broker -> the gateways\' SSH and knock ports (policies as the apiserver stored them)', async () => {
    const pols = (await cluster.json<KubeList<NetPol>>(['-n', NS, 'get', 'networkpolicies', '-l', `app.kubernetes.io/instance=${RELEASE}`])).items;
    // The apiserver validated them (server-side dry run of exactly what the chart renders, too).
    const manifest = await cluster.helm(['get', 'manifest', RELEASE, '-n', NS]);
    assert.equal(manifest.code, 0, manifest.stderr);
    const dry = await cluster.kubectl(['apply', '--dry-run=server', '-n', NS, '-f', '-'], { input: manifest.stdout });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /networkpolicy\.networking\.k8s\.io\/e2e-nonstop-broker-egress (unchanged|configured) \(server dry run\)/);
    // Label maps compared in one key order (the apiserver returns them sorted).
    const labels = (m: Record<string, string> = {}): string => JSON.stringify(Object.fromEntries(Object.entries(m).sort(([a], [b]) => a.localeCompare(b))));
    const base = { 'app.kubernetes.io/name': 'nonstop', 'app.kubernetes.io/instance': RELEASE };
    const sel = (c?: string): string => labels(c ? { ...base, 'app.kubernetes.io/component': c } : base);
    // Every allowed (direction, pod, peer, ports) the policies add up to.
    const allowed: string[] = [];
    let denyAll = false;
    for (const p of pols) {
      const who = labels(p.spec.podSelector.matchLabels);
      const types = p.spec.policyTypes ?? [];
      if (who === sel() && types.includes('Ingress') && types.includes('Egress') && !p.spec.ingress?.length && !p.spec.egress?.length) denyAll = true;
      const ports = (ps?: NetPolPort[]): string => (ps ?? []).map((x) => `${x.protocol ?? 'TCP'}/${x.port ?? '*'}${x.endPort ? `-${x.endPort}` : ''}`).sort().join(',') || 'any';
      const peers = (ps?: NetPolPeer[]): string => (ps ?? []).map((x) => (x.ipBlock ? `cidr:${x.ipBlock.cidr}${x.ipBlock.except ? '!' : ''}` : x.namespaceSelector ? 'namespaces' : `pods:${labels(x.podSelector?.matchLabels)}`)).sort().join(',') || 'anyone';
      for (const r of p.spec.ingress ?? []) allowed.push(`in ${who} from ${peers(r.from)} ports ${ports(r.ports)}`);
      for (const r of p.spec.egress ?? []) allowed.push(`out ${who} to ${peers(r.to)} ports ${ports(r.ports)}`);
    }
    assert.ok(denyAll, 'no default-deny policy over the release\'s pods');
    const [k0, k1] = KNOCK_RANGE.split('-');
    assert.deepEqual(allowed.sort(), [
      `in ${sel('core')} from pods:${sel('broker')} ports TCP/8443`,
      `out ${sel('broker')} to cidr:${cluster.nodeIp}/32 ports TCP/${PORTS.ssh},TCP/${k0}-${k1}`,
      `out ${sel('broker')} to pods:${sel('core')} ports TCP/8443`,
    ].sort());
  });

  it('enforces those policies (kube-router): brokers reach core and nothing else on the node, core reaches nothing, only brokers reach core', async function () {
    this.timeout(180_000);
    assert.equal(cluster.networkPolicy, 'kube-router');
    // Outcome of a TCP connect from inside a pod: open, refused (a policy's REJECT or a closed
    // port) or timeout (a silent drop: the gateway's table on its SSH and knock ports).
    const connect = async (pod: string, host: string, port: number): Promise<string> => {
      const script = 'const [h,p]=process.argv.slice(1);const s=require("net").connect({host:h,port:+p,timeout:4000});' +
        's.on("connect",()=>{console.log("open");process.exit(0)});s.on("timeout",()=>{console.log("timeout");process.exit(0)});' +
        's.on("error",(e)=>{console.log(e.code);process.exit(0)})';
      return (await cluster.k(['-n', NS, 'exec', pod, '--', 'node', '-e', script, host, String(port)])).trim();
    };
    const pods = await releasePods();
    const broker = pods.find((p) => p.metadata.labels?.['app.kubernetes.io/component'] === 'broker')!.metadata.name;
    const core = await podOf('core');
    const coreIp = (await cluster.json<{ status: { podIP: string } }>(['-n', NS, 'get', 'pod', core])).status.podIP;
    const coreService = (await cluster.json<{ spec: { clusterIP: string } }>(['-n', NS, 'get', 'service', `${FULLNAME}-core`])).spec.clusterIP;
    // A pod no policy selects, from the broker image: the controls that the ports are open.
    const outsider = 'netpol-outsider';
    await cluster.k(['-n', NS, 'run', outsider, `--image=${images.broker}`, '--image-pull-policy=Never', '--restart=Never', '--command', '--', 'node', '-e', 'setTimeout(() => {}, 1e9)']);
    try {
      await cluster.k(['-n', NS, 'wait', '--for=condition=Ready', `pod/${outsider}`, '--timeout=90s']);
      const seen = {
        brokerToCoreService: await connect(broker, coreService, 8443),
        brokerToCorePod: await connect(broker, coreIp, 8443),
        brokerToNodeHttps: await connect(broker, cluster.nodeIp, PORTS.https),
        brokerToNodeSsh: await connect(broker, cluster.nodeIp, PORTS.ssh),
        brokerToApiserver: await connect(broker, cluster.nodeIp, 6443),
        coreToNodeHttps: await connect(core, cluster.nodeIp, PORTS.https),
        outsiderToCorePod: await connect(outsider, coreIp, 8443),
        outsiderToNodeHttps: await connect(outsider, cluster.nodeIp, PORTS.https),
      };
      assert.deepEqual(seen, {
        brokerToCoreService: 'open',
        brokerToCorePod: 'open',
        // Not in the broker's egress, though the gateway listens there (the outsider's control).
        brokerToNodeHttps: 'ECONNREFUSED',
        // Allowed by the policy, then dropped silently by the gateway's table (no knock).
        brokerToNodeSsh: 'timeout',
        brokerToApiserver: 'ECONNREFUSED',
        // Core has no egress at all.
        coreToNodeHttps: 'ECONNREFUSED',
        // Core's ingress is brokers only; the same pod reaches the node's open port.
        outsiderToCorePod: 'ECONNREFUSED',
        outsiderToNodeHttps: 'open',
      });
    } finally {
      await cluster.kubectl(['-n', NS, 'delete', 'pod', outsider, '--wait=true', '--grace-period=1']);
    }
  });

  it('helm uninstall leaves nothing of the release: no pods, claims, Services, policies, release Secrets, nor the gateway\'s table on the host', async function () {
    this.timeout(300_000);
    const un = await cluster.helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '3m'], { timeoutMs: 240_000 });
    assert.equal(un.code, 0, un.stderr);
    // What the test itself made stays until it deletes it: the keys' Secrets, the TLS Secret,
    // the namespace's default ServiceAccount and CA bundle. Nothing else may stay once the
    // garbage collector has followed the deleted owners (ReplicaSets, revisions, claims).
    const mine = new Set([
      'Secret/nonstop-gateway-keys', 'Secret/nonstop-broker-keys', 'Secret/nonstop-core-keys', `Secret/${FULLNAME}-gateway-tls`,
      'ServiceAccount/default', 'ConfigMap/kube-root-ca.crt',
    ]);
    const kinds = 'all,pvc,secrets,configmaps,networkpolicies,poddisruptionbudgets,serviceaccounts,controllerrevisions,endpointslices,roles,rolebindings';
    let left: string[] = [];
    const others = async (): Promise<string[]> => {
      left = (await cluster.json<KubeList<{ kind: string; metadata: { name: string } }>>(['-n', NS, 'get', kinds])).items.map((o) => `${o.kind}/${o.metadata.name}`);
      return left.filter((o) => !mine.has(o));
    };
    await waitFor('nothing of the release left in the namespace', async () => (await others()).length === 0, 180_000, 1000).catch(async () => {
      assert.deepEqual(await others(), [], 'left behind in the namespace');
    });
    // The positive control of that listing: what the test made is still seen.
    assert.ok(left.includes('Secret/nonstop-core-keys'), `listing misses the test's own Secret: ${left.join(', ')}`);
    // The claim's volume was released (its claim deleted with the StatefulSet).
    const pv = await cluster.json<{ status: { phase: string } }>(['get', 'pv', PV_NAME]);
    assert.equal(pv.status.phase, 'Released');
    // The gateway removed its table from the host when it stopped; nothing listens on its ports.
    const table = await hostTable();
    assert.notEqual(table.code, 0, `the gateway's table is still on the host:\n${table.stdout}`);
    const listening = await run('ss', ['-Hltn', `( sport = :${PORTS.https} or sport = :${PORTS.ssh} or sport = :${PORTS.http} )`]);
    assert.equal(listening.code, 0, listening.stderr);
    assert.equal(listening.stdout.trim(), '', `still listening: ${listening.stdout}`);
  });
});
