import assert from 'node:assert/strict';
import { loadCompose, type ComposeSpec } from '../support/stack/compose-config';
import { docker } from '../support/stack/docker';
import { testImages } from '../support/stack/fixture';
import type { ImageSet } from '../support/stack/build';
import { scanImage, type ImageScan } from './support/image-files';
import { DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../../services/common/lifecycle/shutdown';

/**
 * Public CA certificates that ship with the system or a library (ioredis bundles the CAs
 * of hosted Redis services for its TLS profiles): public by nature, not ours.
 */
const PUBLIC_CERTIFICATES = /^\/(usr\/share\/ca-certificates|etc\/ssl\/certs)\/|^\/app\/node_modules\/ioredis\/built\/constants\/TLSProfiles\.js$/;

/** A PEM block with a body (code that merely names the marker does not count). */
const PRIVATE_MATERIAL = [/-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/]{60}/, /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/]{60}/];

/**
 * Each image and the compose file, checked against the rules every part keeps: non-root,
 * no setuid/setgid files, file capabilities exactly where documented, no private key or
 * certificate of ours in any file, read-only roots, capabilities dropped, limits set.
 */
describe('image and compose policy', function () {
  this.timeout(600_000);
  let images: ImageSet;
  const scans = new Map<string, ImageScan>();
  let compose: ComposeSpec;

  before(async () => {
    images = await testImages();
    for (const [tier, image] of [['gateway', images.gateway], ['broker', images.broker], ['core', images.core]] as const) {
      scans.set(tier, await scanImage(docker(), image, PRIVATE_MATERIAL));
    }
    compose = loadCompose({ NONSTOP_CORE_TARGET: images.coreTarget });
  });

  for (const tier of ['gateway', 'broker', 'core'] as const) {
    it(`${tier}: has no setuid or setgid file`, () => {
      const special = scans.get(tier)!.files.filter((f) => f.type === 'file' && (f.mode & 0o6000) !== 0);
      assert.deepEqual(special.map((f) => f.name), []);
    });

    it(`${tier}: holds no private key anywhere (libraries' test fixtures included), and no certificate outside the system trust store`, () => {
      const found = scans.get(tier)!.matches.filter((m) => !(m.pattern.includes('CERTIFICATE') && PUBLIC_CERTIFICATES.test(m.name)));
      assert.deepEqual(found, []);
    });
  }

  /** Top-level package names under /app/node_modules (scoped ones as "@scope/name"). */
  const packagesIn = (tier: string): Set<string> => {
    const names = new Set<string>();
    for (const f of scans.get(tier)!.files) {
      const m = /^\/app\/node_modules\/((?:@[^/]+\/)?[^/@][^/]*)\/package\.json$/.exec(f.name);
      if (m) names.add(m[1]!);
    }
    return names;
  };

  for (const tier of ['gateway', 'broker', 'core'] as const) {
    it(`${tier}: carries node but no package manager (npm, npx, corepack, yarn) and no Node headers`, () => {
      const names = scans.get(tier)!.files.map((f) => f.name);
      assert.ok(names.includes('/usr/local/bin/node'), 'positive control: the node binary is found');
      const tools = names.filter((n) => /^\/usr\/local\/(bin\/(npm|npx|corepack|yarn|yarnpkg)$|lib\/node_modules\/|include\/node\/)/.test(n) || /\/node_modules\/(npm|corepack)\/package\.json$/.test(n));
      assert.deepEqual(tools, []);
    });
  }

  it("ships each tier's own libraries only: no database driver outside core, no ssh2 or Redis client in core", () => {
    const gateway = packagesIn('gateway');
    const broker = packagesIn('broker');
    const core = packagesIn('core');
    // Positive controls: what each tier does need is found the same way.
    assert.ok(gateway.has('ssh2') && gateway.has('ioredis'), 'gateway needs ssh2 and ioredis');
    assert.ok(broker.has('ssh2') && broker.has('ajv'), 'broker needs ssh2 and ajv');
    assert.ok(core.has('mongodb') && core.has('express'), 'core needs mongodb and express');
    assert.ok(!gateway.has('mongodb') && !broker.has('mongodb'), 'the MongoDB driver is core-only');
    assert.ok(!core.has('ssh2') && !core.has('ioredis'), 'ssh2 and ioredis are not core libraries');
    for (const [tier, set] of [['gateway', gateway], ['broker', broker], ['core', core]] as const) {
      for (const dev of ['typescript', 'mocha', 'eslint', 'dockerode']) assert.ok(!set.has(dev), `${tier} ships the dev dependency ${dev}`);
    }
  });

  it('gives file capabilities to exactly tcpdump (NET_RAW) and nft (NET_ADMIN) in the gateway, and to nothing in the others', () => {
    const capped = (tier: string) => scans.get(tier)!.files.filter((f) => f.hasCapabilities).map((f) => f.name).sort();
    assert.deepEqual(capped('gateway'), ['/usr/bin/tcpdump', '/usr/sbin/nft']);
    assert.deepEqual(capped('broker'), []);
    assert.deepEqual(capped('core'), []);
  });

  it('runs every long-lived service with a read-only root, all capabilities dropped, memory and pids limits', () => {
    for (const name of ['gateway', 'broker', 'core', 'keygen']) {
      const s = compose.services[name]!;
      assert.equal(s.readOnly, true, `${name} read_only`);
      assert.deepEqual(s.capDrop, ['ALL'], `${name} cap_drop`);
      assert.ok((s.memoryBytes ?? 0) > 0, `${name} mem_limit`);
      assert.ok((s.pidsLimit ?? 0) > 0, `${name} pids_limit`);
    }
  });

  it('adds only the documented capabilities: NET_ADMIN and NET_RAW to the gateway, none elsewhere', () => {
    assert.deepEqual([...compose.services.gateway!.capAdd].sort(), ['NET_ADMIN', 'NET_RAW']);
    for (const name of ['broker', 'core', 'keygen']) assert.deepEqual(compose.services[name]!.capAdd, [], name);
  });

  it('sets no-new-privileges everywhere but the gateway, whose file capabilities it would void', () => {
    for (const name of ['broker', 'core', 'keygen']) assert.ok(compose.services[name]!.securityOpt.includes('no-new-privileges:true'), name);
    assert.deepEqual(compose.services.gateway!.securityOpt, []);
  });

  it('publishes ports for the gateway only, and puts core on the internal network only', () => {
    for (const name of ['broker', 'core', 'keygen']) assert.deepEqual(compose.services[name]!.ports, [], name);
    assert.deepEqual(compose.services.core!.networks, ['private']);
    // `monitoring`: where Prometheus scrapes the gateway (test/security/monitoring-compose.test.ts).
    assert.deepEqual(compose.services.gateway!.networks, ['edge', 'monitoring']);
    assert.equal(compose.networks.private!.internal, true);
    assert.equal(compose.networks.monitoring!.internal, true);
    assert.equal(compose.services.keygen!.networkMode, 'none');
  });

  it('lets no long-lived service swap or dump core: memory + swap equals memory, core size 0', () => {
    for (const name of ['gateway', 'broker', 'core', 'keygen']) {
      const s = compose.services[name]!;
      assert.ok((s.memoryBytes ?? 0) > 0, `${name} mem_limit (positive control)`);
      assert.equal(s.memorySwapBytes, s.memoryBytes, `${name} memswap_limit`);
      assert.deepEqual(s.coreLimit, { soft: 0, hard: 0 }, `${name} ulimits.core`);
    }
  });

  it('gives every long-lived service more time to stop than it takes to drain, so docker stop never kills one mid-drain', () => {
    for (const name of ['gateway', 'broker', 'core']) {
      const s = compose.services[name]!;
      const drainMs = Number(s.environment.SHUTDOWN_TIMEOUT_MS ?? DEFAULT_SHUTDOWN_TIMEOUT_MS);
      assert.ok(s.stopGraceSeconds !== undefined, `${name} has no stop_grace_period (Docker's default is 10 s)`);
      assert.ok(s.stopGraceSeconds * 1000 > drainMs, `${name}: stop_grace_period ${s.stopGraceSeconds} s is not longer than its drain ${drainMs} ms`);
    }
  });

  it('mounts the broker keys read-only and gives the broker nothing persistent', () => {
    const vols = compose.services.broker!.volumes;
    assert.ok(vols.every((v) => v.readOnly), JSON.stringify(vols));
    assert.ok(Object.keys(compose.services.broker!.tmpfs).includes('/run/nonstop'));
  });
});
