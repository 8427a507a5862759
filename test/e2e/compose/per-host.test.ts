import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type Docker from 'dockerode';
import { LocalRegistry } from '../../support/local-registry';
import { runCommand, type CommandResult } from '../../support/run-command';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';
import { ApiClient } from '../../support/stack/api-client';
import { REPO_ROOT, type ImageSet } from '../../support/stack/build';
import { docker } from '../../support/stack/docker';
import { TEST_TAG, testImages } from '../../support/stack/fixture';
import { inContainer, lookupName, tcpProbe, type Runner } from '../../support/stack/net-probe';
import { compose, perHostFile, TIERS, type Tier } from '../../support/stack/per-host-compose';
import { demux, execIn } from '../../support/stack/stack';

/** The images' user: keygen writes as it, and each tier reads its keys as it. */
const SERVICE_UID = 10001;
const VERSION = '1.2.3';

/**
 * Walks directories inside a container as its own user and prints every regular file's
 * SHA-256. A file or directory it cannot read is reported, never skipped: an unreadable key
 * would otherwise look absent.
 */
const HASH_FILES_SCRIPT = `
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const files = {}, errors = [];
const walk = (d) => {
  let entries;
  try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch (e) { errors.push(d + ': ' + e.code); return; }
  for (const e of entries) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.isFile()) { try { files[p] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'); } catch (err) { errors.push(p + ': ' + err.code); } }
  }
};
for (const d of process.argv.slice(1)) walk(d);
process.stdout.write(JSON.stringify({ files, errors }));
`;

/** Runs a probe on this machine itself, with the Node.js running the suite. */
const onThisHost: Runner = async (cmd) => {
  const r = await runCommand(cmd[0] === 'node' ? process.execPath : cmd[0]!, cmd.slice(1), { timeoutMs: 60_000 });
  return { exitCode: r.code, stdout: r.stdout, stderr: r.stderr };
};

/** Every regular file under `dir` on this machine, by path relative to `dir`, as SHA-256. */
function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

/**
 * deploy/compose/'s three files, each run as its own "host": its own compose project with
 * networks of its own, the images by digest from a throwaway registry through the env file
 * scripts/release-manifest.sh writes, the keys from one nonstop-keygen run, each tier given
 * only its own directory. The hosts share only what the design lets them share: a network
 * standing for the internet (gateway and broker; the test's probe stands on it too) and a
 * private network (broker and core). A compose override per host joins it to those, as the
 * host's network interfaces would; nothing else of the files is changed.
 */
describe('per-host compose files: gateway, broker and core as separate hosts', function () {
  this.timeout(1_800_000);
  const run = `nonstop-ph-${randomBytes(3).toString('hex')}`;
  const project = (tier: Tier): string => `${run}-${tier}`;
  const internet = `${run}-internet`;
  const lan = `${run}-lan`;
  const engine = docker();
  let images: ImageSet;
  let registry: LocalRegistry;
  let tmp: { dir: string; cleanup: () => void };
  let releaseEnv: string;
  let keys: string;
  let hostEnv: Record<string, string>;
  const refs: Record<Tier, string> = { gateway: '', broker: '', core: '' };
  const pushedTags: string[] = [];

  /** `compose -p <project> --env-file <envFile> -f <tier file> -f <its override> <args>`. */
  const composeHost = (tier: Tier, args: string[], opts: { envFile?: string; project?: string; env?: Record<string, string> } = {}): Promise<CommandResult> =>
    compose(['-p', opts.project ?? project(tier), '--env-file', opts.envFile ?? releaseEnv, '-f', perHostFile(tier), '-f', join(tmp.dir, `${tier}.override.yaml`), ...args], { ...hostEnv, ...opts.env });

  async function containersOf(projectName: string): Promise<Docker.ContainerInfo[]> {
    return engine.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${projectName}`] } });
  }

  async function container(tier: Tier): Promise<Docker.Container> {
    const [c] = await engine.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${project(tier)}`, `com.docker.compose.service=${tier}`] } });
    if (!c) throw new Error(`no ${tier} container in project ${project(tier)}`);
    return engine.getContainer(c.Id);
  }

  async function waitHealthy(tier: Tier): Promise<void> {
    const c = await container(tier);
    try {
      await waitFor(`${tier} healthy`, async () => (await c.inspect()).State.Health?.Status === 'healthy', 300_000, 500);
    } catch (err) {
      const logs = demux(await c.logs({ stdout: true, stderr: true, follow: false }));
      throw new Error(`${(err as Error).message}\n${logs.slice(-4000)}`);
    }
  }

  /** Host address:port → container port of every binding the project's containers have. */
  async function publishedPorts(projectName: string): Promise<string[]> {
    const out: string[] = [];
    for (const c of await containersOf(projectName)) {
      const info = await engine.getContainer(c.Id).inspect();
      for (const [port, bindings] of Object.entries(info.NetworkSettings.Ports ?? {})) for (const b of bindings ?? []) out.push(`${b.HostIp}:${b.HostPort}->${port}`);
      // What the container was created with, too: a binding Docker could not make still counts.
      const configured = (info.HostConfig.PortBindings ?? {}) as Record<string, { HostIp: string; HostPort: string }[] | null>;
      for (const [port, bindings] of Object.entries(configured)) {
        for (const b of bindings ?? []) if (!out.some((o) => o.endsWith(`->${port}`))) out.push(`${b.HostIp}:${b.HostPort || '?'}->${port} (configured)`);
      }
    }
    return out.sort();
  }

  /** SHA-256 of every file a tier's containers hold in their mounts and tmpfs, read as the tier's own user. */
  async function filesHeld(tier: Tier): Promise<Map<string, string>> {
    const c = await container(tier);
    const info = await c.inspect();
    const dirs = [...info.Mounts.map((m) => m.Destination), ...Object.keys(info.HostConfig.Tmpfs ?? {})];
    const res = await execIn(engine, c, ['node', '-e', HASH_FILES_SCRIPT, ...dirs]);
    assert.equal(res.exitCode, 0, res.stderr);
    const { files, errors } = JSON.parse(res.stdout) as { files: Record<string, string>; errors: string[] };
    assert.deepEqual(errors, [], `${tier}: files it could not read`);
    return new Map(Object.entries(files));
  }

  before(async () => {
    images = await testImages();
    tmp = tempDir('nonstop-per-host-');
    registry = await LocalRegistry.start();

    // The images by digest: pushed to the registry, named by the digest it answers with.
    const names: Record<Tier, string> = { gateway: 'gateway', broker: 'broker', core: images.coreTarget };
    for (const tier of TIERS) {
      const tagged = `${registry.host}/nonstop/${names[tier]}:${TEST_TAG}`;
      for (const args of [['tag', images[tier], tagged], ['push', tagged]]) {
        const r = await runCommand('/usr/bin/docker', args);
        assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
      }
      pushedTags.push(tagged);
      const repoDigests = (await engine.getImage(tagged).inspect()).RepoDigests;
      const ref = repoDigests.find((d) => d.startsWith(`${registry.host}/nonstop/${names[tier]}@sha256:`));
      if (!ref) throw new Error(`no digest of ${tagged} from ${registry.host}: ${repoDigests.join(', ')}`);
      refs[tier] = ref;
    }
    const manifest = await runCommand('bash', [
      join(REPO_ROOT, 'scripts', 'release-manifest.sh'),
      ...['--out', tmp.dir, '--version', VERSION, '--revision', 'c'.repeat(40), '--source', 'https://example.invalid/nonstop'],
      ...['--attestations', 'in-image-index', '--signing', 'key'],
      ...TIERS.map((t) => `${t}=${refs[t]}`),
    ]);
    assert.equal(manifest.code, 0, manifest.stderr);
    releaseEnv = join(tmp.dir, `${VERSION}.env`);

    // Keys as docs/deploying.md makes them for a fleet: one keygen run on a trusted machine,
    // then each tier's directory to its own host.
    keys = join(tmp.dir, 'keys');
    mkdirSync(keys);
    chownSync(keys, SERVICE_UID, SERVICE_UID);
    const keygen = await engine.createContainer({
      Image: refs.core,
      Cmd: ['nonstop-keygen'],
      Env: ['GATEWAY_ID=gw1', 'GATEWAY_HOST=gateway.internet', 'SSH_PORT=2222', 'CORE_NAMES=core.lan'],
      Labels: { 'nonstop.test': run },
      HostConfig: { NetworkMode: 'none', ReadonlyRootfs: true, CapDrop: ['ALL'], Binds: [`${keys}:/keys`] },
    });
    await keygen.start();
    const done = (await keygen.wait()) as { StatusCode: number };
    const keygenLogs = demux(await keygen.logs({ stdout: true, stderr: true, follow: false }));
    await keygen.remove();
    assert.equal(done.StatusCode, 0, keygenLogs);

    // The wires between hosts. `lan` is internal: it leads nowhere but to the other host.
    await engine.createNetwork({ Name: internet, Driver: 'bridge', Labels: { 'nonstop.test': run } });
    await engine.createNetwork({ Name: lan, Driver: 'bridge', Internal: true, Labels: { 'nonstop.test': run } });
    const attach: Record<Tier, Record<string, string>> = { gateway: { internet: 'gateway.internet' }, broker: { internet: 'broker.internet', lan: 'broker.lan' }, core: { lan: 'core.lan' } };
    for (const tier of TIERS) {
      const nets = Object.entries(attach[tier]);
      writeFileSync(
        join(tmp.dir, `${tier}.override.yaml`),
        [
          'services:',
          `  ${tier}:`,
          '    networks:',
          ...nets.map(([net, alias]) => `      ${net}: { aliases: [${alias}] }`),
          'networks:',
          ...nets.map(([net]) => `  ${net}: { external: true, name: ${net === 'internet' ? internet : lan} }`),
          '',
        ].join('\n'),
      );
    }

    // The hosts' own settings. Ports go to random loopback ports; the SSH port and the knock
    // range to a loopback address of this run's own, as Docker allows one binding per address.
    const tunnelBind = `127.${1 + (randomBytes(1)[0]! % 250)}.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0]! % 250)}`;
    hostEnv = {
      NONSTOP_GATEWAY_KEYS: join(keys, 'gateway'),
      NONSTOP_BROKER_KEYS: join(keys, 'broker'),
      NONSTOP_CORE_KEYS: join(keys, 'core'),
      NONSTOP_BIND: '127.0.0.1',
      NONSTOP_HTTP_PORT: '0',
      NONSTOP_HTTPS_PORT: '0',
      NONSTOP_TUNNEL_BIND: tunnelBind,
      NONSTOP_SSH_PORT: '0',
      NONSTOP_CORE_URL: 'https://core.lan:8443',
      NONSTOP_CORE_BIND: '127.0.0.1',
      NONSTOP_CORE_PORT: '0',
      // Publishing the 1000-port knock range takes Docker longer than compose v1's 60 s default.
      COMPOSE_HTTP_TIMEOUT: '600',
    };

    for (const tier of ['core', 'gateway', 'broker'] as const) {
      const up = await composeHost(tier, ['up', '-d']);
      assert.equal(up.code, 0, `${tier} up: ${up.stderr}`);
      await waitHealthy(tier);
    }
  });

  after(async () => {
    const projects = [...TIERS.map(project), ...TIERS.map((t) => `${project(t)}-refused`)];
    for (const p of projects) for (const c of await containersOf(p)) await engine.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    for (const label of [...projects.map((p) => `com.docker.compose.project=${p}`), `nonstop.test=${run}`]) {
      for (const c of await engine.listContainers({ all: true, filters: { label: [label] } })) await engine.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      for (const n of await engine.listNetworks({ filters: { label: [label] } })) await engine.getNetwork(n.Id).remove().catch(() => undefined);
      for (const v of (await engine.listVolumes({ filters: { label: [label] } })).Volumes ?? []) await engine.getVolume(v.Name).remove({ force: true }).catch(() => undefined);
    }
    // Only the names this run gave the images; the images stay under their suite tag.
    for (const ref of [...pushedTags, ...Object.values(refs).filter(Boolean)]) await engine.getImage(ref).remove({ noprune: true }).catch(() => undefined);
    await registry?.stop();
    tmp?.cleanup();
  });

  it('stores a record through the gateway host and reads it back', async () => {
    const gateway = await container('gateway');
    const cert = await execIn(engine, gateway, ['cat', '/var/lib/nonstop/tls/server.crt']);
    assert.equal(cert.exitCode, 0, cert.stderr);
    const port = Number((await gateway.inspect()).NetworkSettings.Ports['443/tcp']?.[0]?.HostPort);
    const token = await execIn(engine, await container('core'), ['nonstop-admin', 'token', 'create', '--collections', 'notes', '--scopes', 'read,write']);
    assert.equal(token.exitCode, 0, token.stderr);
    const api = ApiClient.at(port, cert.stdout);
    const title = `per-host ${randomBytes(4).toString('hex')}`;
    // The broker is healthy once its tunnel is up; the gateway may take a moment to see it.
    const created = await waitFor('a 201 for the record', async () => {
      const res = await api.post('notes', { title }, token.stdout.trim());
      return res.status === 201 ? res : undefined;
    }, 60_000, 1000);
    const id = (created.json as { id: string }).id;
    const read = await api.get('notes', id, token.stdout.trim());
    assert.equal(read.status, 200, read.text);
    assert.deepEqual((read.json as { data: unknown }).data, { title });
  });

  it('publishes nothing from the broker host; the gateway host 80, 443, SSH and the knock range; the core host 8443 on its private address only', async () => {
    const gateway = await publishedPorts(project('gateway'));
    // Positive control: the same reading finds what the gateway host publishes.
    assert.ok(gateway.some((p) => /^127\.0\.0\.1:\d+->443\/tcp$/.test(p)), gateway.join(', '));
    assert.ok(gateway.some((p) => /^127\.0\.0\.1:\d+->80\/tcp$/.test(p)), gateway.join(', '));
    assert.ok(gateway.some((p) => /:\d+->2222\/tcp$/.test(p)), gateway.join(', '));
    assert.equal(gateway.filter((p) => /->4\d{4}\/tcp$/.test(p)).length, 1000, 'the whole knock range');
    assert.equal(gateway.length, 1003, gateway.filter((p) => !/->4\d{4}\/tcp$/.test(p)).join(', '));
    assert.deepEqual(await publishedPorts(project('broker')), []);
    const core = await publishedPorts(project('core'));
    assert.equal(core.length, 1, core.join(', '));
    assert.match(core[0]!, /^127\.0\.0\.1:\d+->8443\/tcp$/);
  });

  it("leaves core unreachable from the gateway's networks, where the gateway's 443 answers", async () => {
    const coreInfo = await (await container('core')).inspect();
    const coreIps = Object.values(coreInfo.NetworkSettings.Networks).map((n) => n.IPAddress).filter(Boolean);
    assert.ok(coreIps.length >= 2, `core's own network and the private one: ${coreIps.join(', ')}`);
    const gatewayNets = Object.keys((await (await container('gateway')).inspect()).NetworkSettings.Networks);
    assert.equal(gatewayNets.length, 2, gatewayNets.join(', '));
    const probes: Docker.Container[] = [];
    try {
      for (const net of gatewayNets) {
        const probe = await engine.createContainer({ Image: images.probe, Labels: { 'nonstop.test': run }, HostConfig: { NetworkMode: net, CapDrop: ['ALL'] } });
        probes.push(probe);
        await probe.start();
        const from = inContainer(engine, probe);
        const gatewayIp = (await (await container('gateway')).inspect()).NetworkSettings.Networks[net]!.IPAddress;
        assert.equal(await tcpProbe(from, gatewayIp, 443), 'connected', `positive control from ${net}: the gateway's 443`);
        for (const ip of coreIps) assert.notEqual(await tcpProbe(from, ip, 8443), 'connected', `core ${ip}:8443 from ${net}`);
        assert.equal((await lookupName(from, 'core.lan')).outcome, 'not-found', `core's name from ${net}`);
      }
      // Core's published port answers on the address it was given (NONSTOP_CORE_BIND, this
      // machine's loopback standing for the private network) and on none other of the host's,
      // such as its address on the internet network.
      const corePort = Number(coreInfo.NetworkSettings.Ports['8443/tcp']?.[0]?.HostPort);
      const hostOnInternet = ((await engine.getNetwork(internet).inspect()) as { IPAM: { Config: { Gateway?: string }[] } }).IPAM.Config[0]?.Gateway;
      if (!hostOnInternet) throw new Error(`${internet} has no gateway address`);
      assert.equal(await tcpProbe(onThisHost, '127.0.0.1', corePort), 'connected', "positive control: core's port on NONSTOP_CORE_BIND");
      assert.notEqual(await tcpProbe(onThisHost, hostOnInternet, corePort), 'connected', `core's port on the host's internet address ${hostOnInternet}`);
      // Positive control for core: from the private network it answers on 8443.
      const onLan = await engine.createContainer({ Image: images.probe, Labels: { 'nonstop.test': run }, HostConfig: { NetworkMode: lan, CapDrop: ['ALL'] } });
      probes.push(onLan);
      await onLan.start();
      assert.equal(await tcpProbe(inContainer(engine, onLan), 'core.lan', 8443), 'connected');
    } finally {
      for (const p of probes) await p.remove({ force: true }).catch(() => undefined);
    }
  });

  it("holds none of the broker's, core's or the CA's files on the gateway host: its mounts carry exactly keygen's gateway files", async () => {
    const gatewayDir = hashTree(join(keys, 'gateway'));
    const gatewayContents = new Set(gatewayDir.values());
    // What the other tiers hold that the gateway must not: all of it but what keygen gives the
    // gateway too (the knock secret is the same bytes on both sides of the door).
    const forbidden = new Map<string, string>();
    for (const dir of readdirSync(keys).filter((d) => d !== 'gateway')) {
      for (const [path, hash] of hashTree(join(keys, dir))) if (!gatewayContents.has(hash)) forbidden.set(hash, `${dir}/${path}`);
    }
    assert.ok([...forbidden.values()].includes('broker/id_ed25519') && [...forbidden.values()].includes('pki/ca.key'), [...forbidden.values()].join(', '));

    const held = await filesHeld('gateway');
    const found = [...held].filter(([, hash]) => forbidden.has(hash)).map(([path, hash]) => `${path} (${forbidden.get(hash)})`);
    assert.deepEqual(found, []);
    const keyFiles = [...held.keys()].filter((p) => p.startsWith('/etc/nonstop/gateway/')).map((p) => p.slice('/etc/nonstop/gateway/'.length)).sort();
    assert.deepEqual(keyFiles, [...gatewayDir.keys()].sort());

    // Positive control: the same scan of the broker host finds the broker's secrets there.
    const brokerHeld = new Set((await filesHeld('broker')).values());
    for (const secret of ['broker/id_ed25519', 'broker/client.key']) {
      const hash = [...forbidden].find(([, path]) => path === secret)?.[0];
      assert.ok(hash && brokerHeld.has(hash), `${secret} is found on the broker host`);
    }
  });

  for (const tier of TIERS) {
    const variable = `NONSTOP_${tier.toUpperCase()}_DIGEST`;
    it(`refuses to start the ${tier} host without ${variable}, naming it, and creates nothing`, async () => {
      const envFile = join(tmp.dir, `without-${variable}.env`);
      writeFileSync(envFile, readFileSync(releaseEnv, 'utf8').split('\n').filter((l) => !l.startsWith(`${variable}=`)).join('\n'));
      const refused = await composeHost(tier, ['up', '-d'], { envFile, project: `${project(tier)}-refused` });
      assert.notEqual(refused.code, 0, refused.stdout);
      assert.match(refused.stderr, new RegExp(`set ${variable} to @sha256:<digest>`));
      assert.deepEqual(await containersOf(`${project(tier)}-refused`), []);
      // Positive control: with the release env file as written, the same file started this tier.
      assert.equal((await (await container(tier)).inspect()).State.Running, true);
    });
  }

  it('refuses a tag in place of the digest, though that tag names a local image', async () => {
    const envFile = join(tmp.dir, 'tag-not-digest.env');
    writeFileSync(envFile, readFileSync(releaseEnv, 'utf8').replace(/^NONSTOP_BROKER_DIGEST=.*$/m, `NONSTOP_BROKER_DIGEST=:${TEST_TAG}`));
    assert.ok((await engine.getImage(`${registry.host}/nonstop/broker:${TEST_TAG}`).inspect()).Id, 'positive control: the tag names an image here');
    const refused = await composeHost('broker', ['up', '-d'], { envFile, project: `${project('broker')}-refused` });
    assert.notEqual(refused.code, 0, refused.stdout);
    // Compose may create the project's network before it fails on the image; never a container.
    assert.deepEqual(await containersOf(`${project('broker')}-refused`), []);
  });
});
