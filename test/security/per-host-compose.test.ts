import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '../support/run-command';
import { REPO_ROOT } from '../support/stack/build';
import { compose, perHostFile, resolvedConfig, TIERS, type ResolvedCompose, type Tier } from '../support/stack/per-host-compose';
import { tempDir } from '../support/tmp';

/**
 * The per-host compose files of deploy/compose/ hold the same hardening as compose.yaml,
 * setting by setting, so neither can drift from the other: compose versions here cannot
 * share it (Debian's docker-compose 1.29 has no `include:`, and `extends:` of compose.yaml's
 * services would also bring its `build:`, networks and published ports to every host).
 * Each file is resolved the way a host would: with the env file scripts/release-manifest.sh
 * writes, plus the host's own settings. test/e2e/compose/per-host.test.ts runs them.
 */

/** Keys a per-host service sets differently from compose.yaml's, and why; every other key must be equal. */
const DIFFERS_BY_DESIGN: Record<string, string> = {
  image: 'by digest only (compared below)',
  build: 'a host pulls, never builds',
  depends_on: 'the other tiers are on other hosts',
  environment: 'compared variable by variable below',
  volumes: "keys come from the host's keygen directory, read-only",
  ports: 'each host publishes its own (asserted below)',
  networks: "each host's own (asserted below)",
};

/** Variables a per-host service sets differently (or not at all); every other one must be equal. */
const ENV_DIFFERS: Record<Tier, string[]> = {
  // Keys are read from the read-only keygen directory; names are the host's; no monitoring network.
  gateway: ['SSH_HOST_KEY_FILE', 'SSH_AUTHORIZED_KEYS_FILE', 'QUEUE_PASSWORD_FILE', 'KNOCK_SECRET_FILE', 'TLS_NAMES', 'METRICS_SCRAPE_HOST'],
  // Core is on another host, reached by a name in its certificate.
  broker: ['CORE_URL', 'METRICS_SCRAPE_HOST'],
  core: ['METRICS_SCRAPE_HOST'],
};

const HEX = 'a'.repeat(64);
const HOST_SETTINGS = {
  NONSTOP_GATEWAY_KEYS: '/srv/nonstop/keys/gateway',
  NONSTOP_BROKER_KEYS: '/srv/nonstop/keys/broker',
  NONSTOP_CORE_KEYS: '/srv/nonstop/keys/core',
  NONSTOP_CORE_URL: 'https://10.0.0.5:8443',
  NONSTOP_CORE_BIND: '10.0.0.5',
};

describe('per-host compose files (deploy/compose/)', function () {
  this.timeout(120_000);
  let tmp: { dir: string; cleanup: () => void };
  let releaseEnv: string;
  const single = new Map<Tier, Record<string, unknown>>();
  const perHost = new Map<Tier, ResolvedCompose>();

  before(async () => {
    tmp = tempDir('nonstop-per-host-');
    // The env file a release writes, exactly as the script writes it.
    const refs = { gateway: 'gateway', broker: 'broker', core: 'core-ferretdb' };
    const made = await runCommand('bash', [
      join(REPO_ROOT, 'scripts', 'release-manifest.sh'),
      ...['--out', tmp.dir, '--version', '1.2.3', '--revision', 'b'.repeat(40), '--source', 'https://example.invalid/nonstop'],
      ...['--attestations', 'in-image-index', '--signing', 'key'],
      ...Object.entries(refs).map(([role, name]) => `${role}=registry.example/nonstop/${name}@sha256:${HEX}`),
    ]);
    assert.equal(made.code, 0, made.stderr);
    releaseEnv = join(tmp.dir, '1.2.3.env');
    const singleHost = await resolvedConfig(join(REPO_ROOT, 'compose.yaml'), releaseEnv);
    for (const tier of TIERS) {
      single.set(tier, singleHost.services[tier]!);
      perHost.set(tier, await resolvedConfig(perHostFile(tier), releaseEnv, HOST_SETTINGS));
    }
  });

  after(() => tmp.cleanup());

  for (const tier of TIERS) {
    it(`${tier}: has every hardening setting of compose.yaml's ${tier}, with the same value`, () => {
      const a = single.get(tier)!;
      const b = perHost.get(tier)!.services[tier]!;
      const keys = new Set([...Object.keys(a), ...Object.keys(b)].filter((k) => !(k in DIFFERS_BY_DESIGN)));
      // Positive control: the comparison covers the settings that matter most.
      for (const k of ['read_only', 'cap_drop', 'tmpfs', 'mem_limit', 'pids_limit', 'stop_grace_period', 'logging', 'restart']) assert.ok(keys.has(k), `${k} is compared`);
      for (const k of keys) assert.deepEqual(b[k], a[k], `${tier}.${k}`);
    });

    it(`${tier}: sets every variable of compose.yaml's ${tier} to the same value, but the host-specific ones`, () => {
      const a = single.get(tier)!.environment as Record<string, unknown>;
      const b = perHost.get(tier)!.services[tier]!.environment as Record<string, unknown>;
      const names = new Set([...Object.keys(a), ...Object.keys(b)].filter((k) => !ENV_DIFFERS[tier].includes(k)));
      assert.ok(names.size >= 3, `positive control: ${[...names].join(', ')}`);
      for (const k of names) assert.deepEqual(b[k], a[k], `${tier} ${k}`);
    });

    it(`${tier}: runs the release's image by digest from the release env file`, () => {
      const name = tier === 'core' ? 'core-ferretdb' : tier;
      assert.equal(perHost.get(tier)!.services[tier]!.image, `registry.example/nonstop/${name}:1.2.3@sha256:${HEX}`);
    });

    it(`${tier}: mounts its keygen directory read-only and no other host path`, () => {
      // compose v1 prints short forms (source:target:mode), v2 long ones.
      const vols = ((perHost.get(tier)!.services[tier]!.volumes as (string | { source: string; read_only?: boolean })[] | undefined) ?? []).map((v) => {
        if (typeof v !== 'string') return { source: v.source, readOnly: v.read_only === true };
        const [source, , mode] = v.split(':');
        return { source: source!, readOnly: mode === 'ro' };
      });
      assert.deepEqual(
        vols.filter((v) => v.source.startsWith('/')),
        [{ source: HOST_SETTINGS[`NONSTOP_${tier.toUpperCase()}_KEYS` as keyof typeof HOST_SETTINGS], readOnly: true }],
      );
    });
  }

  /** The published ports of a resolved per-host service, as host address:port → container port. */
  const published = (tier: Tier): string[] =>
    ((perHost.get(tier)!.services[tier]!.ports as (string | { target: number; published?: string | number; host_ip?: string })[] | undefined) ?? []).map((p) =>
      typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip ?? ''}:${p.published ?? ''}:${p.target}`,
    );

  it('publishes 80, 443, the SSH port and the knock range on the gateway host, nothing else', () => {
    const ports = published('gateway');
    const knock = Array.from({ length: 1000 }, (_, i) => `0.0.0.0:${40000 + i}:${40000 + i}`);
    assert.deepEqual(ports, ['0.0.0.0:80:80', '0.0.0.0:443:443', '0.0.0.0:2222:2222', ...knock]);
  });

  it('publishes nothing on the broker host', () => {
    assert.ok(published('gateway').length > 0, 'positive control: the same reading finds the gateway ports');
    assert.deepEqual(published('broker'), []);
  });

  it("publishes only core's 8443, and only on the host's private address", () => {
    assert.deepEqual(published('core'), [`${HOST_SETTINGS.NONSTOP_CORE_BIND}:8443:8443`]);
  });

  it("puts each tier on a bridge network of its own and on no other", () => {
    for (const tier of TIERS) {
      const nets = Object.keys(perHost.get(tier)!.networks ?? {});
      assert.equal(nets.length, 1, `${tier}: ${nets.join(', ')}`);
      assert.deepEqual(Object.keys(perHost.get(tier)!.services[tier]!.networks as object), nets);
    }
  });

  for (const [tier, variable] of [['gateway', 'NONSTOP_GATEWAY_DIGEST'], ['broker', 'NONSTOP_BROKER_DIGEST'], ['core', 'NONSTOP_CORE_DIGEST'], ['gateway', 'NONSTOP_GATEWAY_KEYS'], ['broker', 'NONSTOP_CORE_URL'], ['core', 'NONSTOP_CORE_BIND']] as const) {
    it(`${tier}: refuses to resolve without ${variable}, naming it`, async () => {
      const env = join(tmp.dir, `without-${variable}.env`);
      const settings: Record<string, string> = { ...HOST_SETTINGS };
      delete settings[variable];
      const release = readFileSync(releaseEnv, 'utf8').split('\n').filter((l) => !l.startsWith(`${variable}=`));
      writeFileSync(env, [...release, ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)].join('\n'));
      const res = await compose(['--env-file', env, '-f', perHostFile(tier), 'config']);
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, new RegExp(`set ${variable} to`));
    });
  }
});
