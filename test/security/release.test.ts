import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { CleanEngine } from '../support/clean-engine';
import { LocalRegistry } from '../support/local-registry';
import { runCommand, type CommandResult } from '../support/run-command';
import { REPO_ROOT } from '../support/stack/build';
import { TEST_TAG } from '../support/stack/fixture';
import { tempDir } from '../support/tmp';

/** A tool's path from the environment scripts/test.sh sets (scripts/lib/release-tools.sh). */
function tool(variable: string): string {
  const path = process.env[variable];
  if (!path) throw new Error(`${variable} is not set: run the suite through scripts/test.sh, which installs the release tools (scripts/lib/release-tools.sh)`);
  return path;
}

/** verify-release.sh's exit statuses (its header): each refusal has its own. */
const VERIFIED = 0;
const NOT_IN_REGISTRY = 3;
const SIGNATURE_REFUSED = 4;
const ATTESTATION_REFUSED = 5;

const ROLES = ['gateway', 'broker', 'core'] as const;
type Role = (typeof ROLES)[number];

interface ReleaseManifest {
  schema: string;
  version: string;
  tags: string[];
  source: { repository: string; revision: string };
  imagePrefix: string;
  coreTarget: string;
  signing: { mode: string; transparencyLog: boolean };
  attestations: string;
  images: Record<Role, { repository: string; digest: string; reference: string; sbom: string; provenance: string }>;
}

interface CycloneDx {
  bomFormat: string;
  metadata: { component: { name: string } };
  components?: { name: string; purl?: string }[];
}

interface Statement {
  _type: string;
  subject: { name: string; digest: { sha256: string } }[];
  predicateType: string;
  predicate: { buildDefinition: { externalParameters: { version: string; source: string }; resolvedDependencies: { uri: string; digest: Record<string, string> }[] } };
}

function assertRan(r: CommandResult, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

/**
 * The release flow of docs/deploying.md, end to end against a real registry: `npm run
 * release` builds, pushes, tags, attaches an SBOM and a provenance statement and signs; a
 * second Docker engine that has never seen the images verifies the release and pulls it by
 * digest through compose.yaml and the env file the release wrote; then an image pushed over
 * the release tag, a manifest altered after signing (with the genuine signature copied onto
 * it), an image signed with another key, a digest missing from the registry and a provenance
 * statement of another image are each refused, with the genuine release verifying beside
 * them as the positive control.
 */
describe('release: signed images by digest, with SBOM and provenance, through a registry', function () {
  this.timeout(3_600_000);
  const version = '1.2.3';
  const nodeVersion = readFileSync(join(REPO_ROOT, '.node-version'), 'utf8').trim();
  const cosignPassword = randomBytes(12).toString('hex');
  let registry: LocalRegistry;
  let tmp: { dir: string; cleanup: () => void };
  let prefix: string;
  let manifest: ReleaseManifest;
  let manifestPath: string;
  let releaseKey: string;
  let releasePub: string;
  let revision: string;

  const oras = (args: string[]): Promise<CommandResult> => runCommand(tool('NONSTOP_ORAS'), [...args, '--plain-http']);
  const cosign = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandResult> =>
    runCommand(tool('NONSTOP_COSIGN'), args, { env: { ...process.env, COSIGN_PASSWORD: cosignPassword, ...env }, cwd: tmp.dir });
  const verifyRelease = (path: string, pub = releasePub): Promise<CommandResult> =>
    runCommand('bash', [join(REPO_ROOT, 'scripts', 'verify-release.sh'), path, '--key', pub], { cwd: REPO_ROOT });
  /** A copy of the genuine manifest with one change, as an attacker or a typo would make it. */
  const alteredManifest = (name: string, change: (m: ReleaseManifest) => void): string => {
    const copy = JSON.parse(JSON.stringify(manifest)) as ReleaseManifest;
    change(copy);
    const path = join(tmp.dir, name);
    writeFileSync(path, JSON.stringify(copy, null, 2));
    return path;
  };
  const fetchArtifact = async (reference: string): Promise<string> => {
    const out = join(tmp.dir, 'pulled', randomBytes(4).toString('hex'));
    mkdirSync(out, { recursive: true });
    assertRan(await oras(['pull', '--output', out, reference]), `oras pull ${reference}`);
    const files = readdirSync(out);
    assert.equal(files.length, 1, `${reference} holds ${files.join(', ')}`);
    return readFileSync(join(out, files[0]!), 'utf8');
  };

  before(async () => {
    tmp = tempDir('nonstop-release-');
    registry = await LocalRegistry.start();
    prefix = `${registry.host}/nonstop`;
    revision = assertRan(await runCommand('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT }), 'git rev-parse').trim();
    assertRan(await cosign(['generate-key-pair']), 'cosign generate-key-pair');
    releaseKey = join(tmp.dir, 'cosign.key');
    releasePub = join(tmp.dir, 'cosign.pub');

    // Exactly the documented command, through npm, with the pinned Node's npm.
    const release = await runCommand(join(dirname(process.execPath), 'npm'), ['run', 'release', '--', prefix, version], {
      cwd: REPO_ROOT,
      timeoutMs: 3_000_000,
      env: {
        ...process.env,
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
        COSIGN_KEY: releaseKey,
        COSIGN_PASSWORD: cosignPassword,
        NONSTOP_TAG: `${TEST_TAG}-release`,
        NONSTOP_RELEASE_DIR: join(tmp.dir, 'release'),
      },
    });
    assertRan(release, 'npm run release');
    manifestPath = join(tmp.dir, 'release', `${version}.json`);
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as ReleaseManifest;
  });

  after(async () => {
    // What the release and the impostor left in the local engine under this run's registry
    // (its port is this run's alone): tags, then the digest references docker keeps beside
    // them (the genuine gateway's, once the impostor took its tag).
    if (prefix) {
      for (const format of ['{{.Repository}}:{{.Tag}}', '{{.Repository}}@{{.Digest}}']) {
        const listed = await runCommand('/usr/bin/docker', ['image', 'ls', '--digests', '--filter', `reference=${prefix}/*`, '--format', format]);
        for (const ref of listed.stdout.split('\n').filter((l) => l && !l.includes('<none>'))) await runCommand('/usr/bin/docker', ['image', 'rm', ref]);
      }
    }
    await registry?.stop();
    tmp?.cleanup();
  });

  it('writes a manifest naming each role by repository and digest, and pushes each image under 1.2.3, 1.2 and 1, every tag naming that digest', async () => {
    assert.equal(manifest.schema, 'nonstop-release/v1');
    assert.deepEqual(manifest.tags, ['1.2.3', '1.2', '1']);
    assert.equal(manifest.source.revision, revision);
    assert.deepEqual({ mode: manifest.signing.mode, tlog: manifest.signing.transparencyLog }, { mode: 'key', tlog: false });
    for (const role of ROLES) {
      const image = manifest.images[role];
      const name = role === 'core' ? manifest.coreTarget : role;
      assert.equal(image.repository, `${prefix}/${name}`);
      assert.match(image.digest, /^sha256:[0-9a-f]{64}$/);
      assert.equal(image.reference, `${image.repository}@${image.digest}`);
      for (const tag of manifest.tags) {
        assert.equal(assertRan(await oras(['resolve', `${image.repository}:${tag}`]), `oras resolve ${tag}`).trim(), image.digest, `${name}:${tag}`);
      }
    }
  });

  it('labels each pushed image with the version, the full git revision and the source repository', async () => {
    for (const role of ROLES) {
      const config = JSON.parse(assertRan(await oras(['manifest', 'fetch-config', manifest.images[role].reference]), 'oras manifest fetch-config')) as { config: { Labels: Record<string, string> } };
      const labels = config.config.Labels;
      assert.equal(labels['org.opencontainers.image.version'], version, role);
      assert.equal(labels['org.opencontainers.image.revision'], revision, role);
      assert.equal(labels['org.opencontainers.image.source'], manifest.source.repository, role);
      assert.match(manifest.source.repository, /^https:\/\//);
    }
  });

  it('attaches to each digest a CycloneDX SBOM that describes it and lists its Debian and npm packages', async () => {
    const expected: Record<Role, string[]> = { gateway: ['nginx', 'tcpdump', 'nftables', 'ssh2', 'express'], broker: ['redis-server', 'ssh2', 'ioredis', 'ajv'], core: ['tini', 'mongodb', 'express'] };
    for (const role of ROLES) {
      const image = manifest.images[role];
      const referrers = JSON.parse(assertRan(await oras(['discover', '--format', 'json', image.reference]), 'oras discover')) as { referrers: { digest: string; artifactType: string }[] };
      assert.deepEqual(referrers.referrers.filter((r) => r.digest === image.sbom).map((r) => r.artifactType), ['application/vnd.cyclonedx+json'], role);
      const sbom = JSON.parse(await fetchArtifact(`${image.repository}@${image.sbom}`)) as CycloneDx;
      assert.equal(sbom.bomFormat, 'CycloneDX');
      assert.equal(sbom.metadata.component.name, image.reference);
      const names = new Set((sbom.components ?? []).map((c) => c.name));
      for (const name of expected[role]) assert.ok(names.has(name), `${role} SBOM lacks ${name}`);
      assert.ok((sbom.components ?? []).some((c) => c.purl?.startsWith('pkg:deb/debian/')), `${role}: no Debian package`);
      assert.ok((sbom.components ?? []).some((c) => c.purl?.startsWith('pkg:npm/')), `${role}: no npm package`);
    }
  });

  it('attaches to each digest an SLSA v1 provenance statement whose subject is that digest, built from this revision', async () => {
    for (const role of ROLES) {
      const image = manifest.images[role];
      const referrers = JSON.parse(assertRan(await oras(['discover', '--format', 'json', image.reference]), 'oras discover')) as { referrers: { digest: string; artifactType: string }[] };
      assert.deepEqual(referrers.referrers.filter((r) => r.digest === image.provenance).map((r) => r.artifactType), ['application/vnd.in-toto+json'], role);
      const statement = JSON.parse(await fetchArtifact(`${image.repository}@${image.provenance}`)) as Statement;
      assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
      assert.equal(statement.predicateType, 'https://slsa.dev/provenance/v1');
      assert.deepEqual(statement.subject, [{ name: image.repository, digest: { sha256: image.digest.slice('sha256:'.length) } }]);
      assert.equal(statement.predicate.buildDefinition.externalParameters.version, version);
      const git = statement.predicate.buildDefinition.resolvedDependencies.find((d) => d.uri.startsWith('git+'));
      assert.equal(git?.digest.gitCommit, revision);
      assert.ok(statement.predicate.buildDefinition.resolvedDependencies.some((d) => d.uri.startsWith('pkg:docker/debian') && /^[0-9a-f]{64}$/.test(d.digest.sha256 ?? '')), 'no Debian base image by digest');
    }
  });

  it('signs every image, SBOM and provenance digest with the release key, each signature carrying the version', async () => {
    for (const role of ROLES) {
      const image = manifest.images[role];
      for (const digest of [image.digest, image.sbom, image.provenance]) {
        assertRan(await cosign(['verify', '--key', releasePub, '--insecure-ignore-tlog=true', '-a', `version=${version}`, `${image.repository}@${digest}`]), `cosign verify ${role} ${digest}`);
      }
    }
  });

  it('verify-release.sh accepts the genuine release (the positive control of every refusal below)', async () => {
    const r = await verifyRelease(manifestPath);
    assert.equal(r.code, VERIFIED, r.stderr);
  });

  it('a second, empty Docker engine pulls every image by its release digest through compose.yaml and the release env file, and the images run there', async () => {
    const engine = await CleanEngine.start();
    try {
      assert.equal(assertRan(await engine.docker(['images', '-q']), 'docker images').trim(), '', 'the clean engine already holds images');
      const envFile = join(tmp.dir, 'release', `${version}.env`);
      const useV2 = (await runCommand('/usr/bin/docker', ['compose', 'version'])).code === 0;
      const compose = (args: string[]): Promise<CommandResult> =>
        runCommand(useV2 ? '/usr/bin/docker' : 'docker-compose', [...(useV2 ? ['compose'] : []), '--env-file', envFile, '-f', join(REPO_ROOT, 'compose.yaml'), '-p', `nonstop-release-${randomBytes(3).toString('hex')}`, ...args], {
          cwd: REPO_ROOT,
          env: { ...process.env, DOCKER_HOST: engine.host },
          timeoutMs: 1_200_000,
        });
      // What compose will run: every tier by its release digest.
      const config = parse(assertRan(await compose(['config']), 'compose config')) as { services: Record<string, { image: string }> };
      for (const role of ROLES) {
        const image = manifest.images[role];
        assert.equal(config.services[role]?.image, `${image.repository}:${version}@${image.digest}`, role);
      }
      assert.equal(config.services.keygen?.image, config.services.core?.image);

      assertRan(await compose(['pull']), 'compose pull');
      for (const role of ROLES) {
        const image = manifest.images[role];
        const digests = JSON.parse(assertRan(await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image.reference]), `inspect ${role}`)) as string[];
        assert.deepEqual(digests, [image.reference], role);
        const ran = await engine.docker(['run', '--rm', '--network', 'none', image.reference, 'node', '-e', 'process.stdout.write(process.version)']);
        assert.equal(assertRan(ran, `run ${role}`), `v${nodeVersion}`, role);
      }
    } finally {
      await engine.stop();
    }
  });

  describe('refusals', () => {
    let impostor: string;

    before(async () => {
      // Someone with push rights but not the key pushes their own gateway over the release
      // tag: the genuine image plus one more file.
      const ctx = join(tmp.dir, 'impostor');
      mkdirSync(ctx);
      writeFileSync(join(ctx, 'payload'), 'not ours\n');
      writeFileSync(join(ctx, 'Dockerfile'), `FROM ${manifest.images.gateway.reference}\nCOPY payload /usr/local/bin/payload\n`);
      const tag = `${manifest.images.gateway.repository}:${version}`;
      assertRan(await runCommand('/usr/bin/docker', ['build', '-q', '-t', tag, ctx], { env: { ...process.env, DOCKER_BUILDKIT: '1' } }), 'docker build impostor');
      assertRan(await runCommand('/usr/bin/docker', ['push', tag]), 'docker push impostor');
      impostor = assertRan(await oras(['resolve', tag]), 'oras resolve').trim();
    });

    it('refuses an image pushed over the release tag without the key, while the release digest still verifies and is what the tag no longer names', async () => {
      assert.notEqual(impostor, manifest.images.gateway.digest, 'the push over the tag did not land');
      const byTag = alteredManifest('impostor.json', (m) => {
        m.images.gateway.digest = impostor;
        m.images.gateway.reference = `${m.images.gateway.repository}@${impostor}`;
      });
      assert.equal((await verifyRelease(byTag)).code, SIGNATURE_REFUSED);
      assert.equal((await verifyRelease(manifestPath)).code, VERIFIED);
    });

    it('refuses a manifest altered after signing, even with the genuine signature copied onto its digest', async () => {
      const gateway = manifest.images.gateway;
      const original = JSON.parse(assertRan(await oras(['manifest', 'fetch', gateway.reference]), 'oras manifest fetch')) as { mediaType: string; annotations?: Record<string, string> };
      const altered = { ...original, annotations: { ...original.annotations, 'org.opencontainers.image.version': '9.9.9' } };
      const file = join(tmp.dir, 'altered-manifest.json');
      writeFileSync(file, JSON.stringify(altered));
      assertRan(await oras(['manifest', 'push', '--media-type', original.mediaType, `${gateway.repository}:altered`, file]), 'oras manifest push');
      const alteredDigest = assertRan(await oras(['resolve', `${gateway.repository}:altered`]), 'oras resolve').trim();
      assert.notEqual(alteredDigest, gateway.digest);
      // cosign finds a signature by the tag sha256-<digest>.sig: the genuine one, copied.
      const hex = (d: string): string => d.slice('sha256:'.length);
      assertRan(await oras(['tag', `${gateway.repository}:sha256-${hex(gateway.digest)}.sig`, `sha256-${hex(alteredDigest)}.sig`]), 'oras tag signature');
      assert.ok((await registry.tags('nonstop/gateway')).includes(`sha256-${hex(alteredDigest)}.sig`), 'the copied signature is not in the registry');

      const path = alteredManifest('altered.json', (m) => {
        m.images.gateway.digest = alteredDigest;
        m.images.gateway.reference = `${gateway.repository}@${alteredDigest}`;
      });
      assert.equal((await verifyRelease(path)).code, SIGNATURE_REFUSED);
    });

    it('refuses an image signed with a key other than the release key, which that other key does verify', async () => {
      const other = join(tmp.dir, 'other');
      mkdirSync(other);
      assertRan(await runCommand(tool('NONSTOP_COSIGN'), ['generate-key-pair'], { cwd: other, env: { ...process.env, COSIGN_PASSWORD: cosignPassword } }), 'cosign generate-key-pair (other)');
      const ref = `${manifest.images.gateway.repository}@${impostor}`;
      assertRan(await cosign(['sign', '--yes', '--key', join(other, 'cosign.key'), '--tlog-upload=false', '-a', `version=${version}`, ref]), 'cosign sign (other key)');
      const path = alteredManifest('other-key.json', (m) => {
        m.images.gateway.digest = impostor;
        m.images.gateway.reference = ref;
      });
      // It is signed, validly, by that other key: the refusal is about whose key, not a missing signature.
      assertRan(await cosign(['verify', '--key', join(other, 'cosign.pub'), '--insecure-ignore-tlog=true', ref]), 'cosign verify (other key)');
      assert.equal((await verifyRelease(path)).code, SIGNATURE_REFUSED);
    });

    it('refuses a digest the registry does not hold', async () => {
      const missing = `sha256:${randomBytes(32).toString('hex')}`;
      const path = alteredManifest('missing.json', (m) => {
        m.images.broker.digest = missing;
        m.images.broker.reference = `${m.images.broker.repository}@${missing}`;
      });
      assert.equal((await verifyRelease(path)).code, NOT_IN_REGISTRY);
    });

    it("refuses a release whose gateway provenance is another image's (signed, but not attached to the gateway)", async () => {
      const path = alteredManifest('swapped-provenance.json', (m) => {
        m.images.gateway.provenance = m.images.broker.provenance;
      });
      assert.equal((await verifyRelease(path)).code, ATTESTATION_REFUSED);
    });
  });
});
