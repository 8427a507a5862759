import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/stack/build';
import { testImages } from '../support/stack/fixture';
import type { ImageSet } from '../support/stack/build';

/** A scanner's path from the environment scripts/test.sh sets (scripts/lib/scanners.sh). */
function scanner(variable: string): string {
  const path = process.env[variable];
  if (!path) throw new Error(`${variable} is not set: run the suite through scripts/test.sh, which installs the scanners (scripts/lib/scanners.sh)`);
  return path;
}

function run(cmd: string, args: string[], timeoutMs = 300_000): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, TRIVY_CACHE_DIR: process.env.TRIVY_CACHE_DIR ?? '/var/cache/nonstop/scanners/trivy-cache', TRIVY_DISABLE_VEX_NOTICE: 'true' },
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

interface TrivyReport {
  Results?: { Target: string; Secrets?: { RuleID: string; Match: string }[]; Misconfigurations?: { ID: string; Title: string }[] }[];
}

const DOCKERFILES = ['Dockerfile.gateway', 'Dockerfile.broker', 'Dockerfile.core', 'test/support/stack/Dockerfile.probe', 'scripts/images/golang-standin.Dockerfile', 'deploy/monitoring/Dockerfile.prometheus'];
const TRIVY_OFFLINE = ['--skip-check-update', '--quiet'];

/**
 * The scanners users run in their CI (hadolint, trivy, actionlint), run here on the
 * Dockerfiles, the repository, the built images and the workflow we give users. Each
 * exception is justified where it is configured (.hadolint.yaml, .trivyignore.yaml).
 */
describe('container and configuration scanners', function () {
  this.timeout(900_000);
  let images: ImageSet;

  before(async () => {
    images = await testImages();
  });

  it('hadolint finds nothing in the Dockerfiles', () => {
    const r = run(scanner('NONSTOP_HADOLINT'), ['--config', join(REPO_ROOT, '.hadolint.yaml'), ...DOCKERFILES]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('trivy finds no misconfiguration in the Dockerfiles', () => {
    const r = run(scanner('NONSTOP_TRIVY'), ['config', ...TRIVY_OFFLINE, '--skip-dirs', 'node_modules', '--skip-dirs', 'dist', '--ignorefile', '.trivyignore.yaml', '--format', 'json', '--severity', 'LOW,MEDIUM,HIGH,CRITICAL', '.']);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as TrivyReport;
    const scanned = (report.Results ?? []).map((x) => x.Target).sort();
    for (const f of ['Dockerfile.broker', 'Dockerfile.core', 'Dockerfile.gateway', 'scripts/images/golang-standin.Dockerfile', 'deploy/monitoring/Dockerfile.prometheus']) assert.ok(scanned.includes(f), `${f} was not scanned`);
    const findings = (report.Results ?? []).flatMap((x) => (x.Misconfigurations ?? []).map((m) => `${x.Target}: ${m.ID} ${m.Title}`));
    assert.deepEqual(findings, []);
  });

  it('trivy finds no secret in the repository', () => {
    const r = run(scanner('NONSTOP_TRIVY'), ['fs', '--scanners', 'secret', ...TRIVY_OFFLINE, '--skip-dirs', 'node_modules', '--skip-dirs', 'dist', '--format', 'json', '.']);
    assert.equal(r.status, 0, r.stderr);
    const secrets = ((JSON.parse(r.stdout) as TrivyReport).Results ?? []).flatMap((x) => (x.Secrets ?? []).map((s) => `${x.Target}: ${s.RuleID}`));
    assert.deepEqual(secrets, []);
  });

  for (const tier of ['gateway', 'broker', 'core'] as const) {
    it(`trivy finds no secret in any layer of the ${tier} image`, () => {
      const r = run(scanner('NONSTOP_TRIVY'), ['image', '--scanners', 'secret', '--skip-db-update', '--image-src', 'docker', ...TRIVY_OFFLINE, '--format', 'json', images[tier]]);
      assert.equal(r.status, 0, r.stderr);
      const secrets = ((JSON.parse(r.stdout) as TrivyReport).Results ?? []).flatMap((x) => (x.Secrets ?? []).map((s) => `${x.Target}: ${s.RuleID}`));
      assert.deepEqual(secrets, []);
    });

    it(`produces a CycloneDX SBOM of the ${tier} image that lists its operating system and npm packages`, () => {
      const dir = join(REPO_ROOT, 'sbom');
      mkdirSync(dir, { recursive: true });
      const out = join(dir, `${tier}.cdx.json`);
      const r = run(scanner('NONSTOP_TRIVY'), ['image', '--skip-db-update', '--image-src', 'docker', ...TRIVY_OFFLINE, '--format', 'cyclonedx', '--output', out, images[tier]]);
      assert.equal(r.status, 0, r.stderr);
      const sbom = JSON.parse(readFileSync(out, 'utf8')) as { bomFormat: string; components?: { name: string; purl?: string }[] };
      assert.equal(sbom.bomFormat, 'CycloneDX');
      const names = new Set((sbom.components ?? []).map((c) => c.name));
      const expected = { gateway: ['nginx', 'tcpdump', 'nftables', 'ssh2', 'ioredis', 'express'], broker: ['redis-server', 'ssh2', 'ioredis', 'ajv'], core: ['mongodb', 'express', 'tini'] }[tier];
      for (const name of expected) assert.ok(names.has(name), `${tier} SBOM lacks ${name}`);
      assert.ok((sbom.components ?? []).some((c) => c.purl?.startsWith('pkg:deb/')), 'no Debian packages in the SBOM');
      assert.ok((sbom.components ?? []).some((c) => c.purl?.startsWith('pkg:npm/')), 'no npm packages in the SBOM');
    });
  }

  it('actionlint finds nothing in the workflow given to users', () => {
    const r = run(scanner('NONSTOP_ACTIONLINT'), ['.github/workflows/images.yml']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
