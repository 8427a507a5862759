import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkActionPins } from '../../../../tools/lint/action-pins';

const PROJECT = join(__dirname, '..', '..', '..', '..', '..');
const WORKFLOWS = join(PROJECT, '.github', 'workflows');

const SHA = '3d3c42e5aac5ba805825da76410c181273ba90b1';

describe('workflow actions pinned by commit SHA', () => {
  it('every `uses:` in the workflows given to users names a full commit SHA with its version in a comment', () => {
    const files = readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f));
    assert.ok(files.length > 0, `no workflow files in ${WORKFLOWS}`);
    let references = 0;
    for (const file of files) {
      const report = checkActionPins(readFileSync(join(WORKFLOWS, file), 'utf8'));
      references += report.references.length;
      assert.deepEqual(report.findings, [], `${file} has actions not pinned by SHA`);
    }
    // The checker read the actions: "nothing unpinned" from a file it could not read is no result.
    assert.ok(references >= 10, `only ${references} uses: found in ${files.join(', ')}`);
  });

  it('flags actions pinned by tag, by branch or by a short SHA, a container action by tag, and a SHA without its version comment', () => {
    const sample = [
      'jobs:',
      '  a:',
      '    uses: acme/workflows/.github/workflows/build.yml@main',
      '  b:',
      '    steps:',
      '      - uses: aquasecurity/trivy-action@0.28.0',
      '      - uses: actions/checkout@v4',
      '      - uses: docker/login-action@c94ce9f',
      '      - uses: docker://alpine:3.20',
      `      - uses: actions/checkout@${SHA}`,
      `      - uses: actions/checkout@${SHA} # pinned`,
    ].join('\n');
    assert.deepEqual(
      checkActionPins(sample).findings.map((f) => [f.line, f.uses, f.problem]),
      [
        [3, 'acme/workflows/.github/workflows/build.yml@main', 'not-pinned-by-sha'],
        [6, 'aquasecurity/trivy-action@0.28.0', 'not-pinned-by-sha'],
        [7, 'actions/checkout@v4', 'not-pinned-by-sha'],
        [8, 'docker/login-action@c94ce9f', 'not-pinned-by-sha'],
        [9, 'docker://alpine:3.20', 'not-pinned-by-sha'],
        [10, `actions/checkout@${SHA}`, 'no-version-comment'],
        [11, `actions/checkout@${SHA}`, 'no-version-comment'],
      ],
    );
  });

  it('accepts SHA pins with a version comment, reusable workflows by SHA, container actions by digest and local actions', () => {
    const sample = [
      'jobs:',
      '  a:',
      `    uses: acme/workflows/.github/workflows/build.yml@${SHA} # v2.1.0`,
      '  b:',
      '    steps:',
      `      - uses: actions/checkout@${SHA} # v7.0.1`,
      `      - uses: aquasecurity/trivy-action@${SHA}  # 0.36.0`,
      `      - uses: docker://alpine@sha256:${'a'.repeat(64)} # 3.20`,
      '      - uses: ./.github/actions/local',
    ].join('\n');
    const report = checkActionPins(sample);
    assert.equal(report.references.length, 5);
    assert.deepEqual(report.findings, []);
  });
});

describe('Dependabot configuration', () => {
  it('proposes weekly updates of the pinned actions, the npm packages and the Docker base images, all from the repository root', () => {
    const config = parse(readFileSync(join(PROJECT, '.github', 'dependabot.yml'), 'utf8')) as { version: number; updates: { 'package-ecosystem': string; directory: string; schedule: { interval: string } }[] };
    assert.equal(config.version, 2);
    assert.deepEqual(
      config.updates.map((u) => [u['package-ecosystem'], u.directory, u.schedule.interval]).sort(),
      [['docker', '/', 'weekly'], ['github-actions', '/', 'weekly'], ['npm', '/', 'weekly']],
    );
  });
});
