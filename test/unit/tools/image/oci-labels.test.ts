import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const PROJECT = join(__dirname, '..', '..', '..', '..', '..');

/** The images users pull or run: the three tiers and the compose demo's Prometheus. */
const SHIPPED = ['Dockerfile.gateway', 'Dockerfile.broker', 'Dockerfile.core', 'deploy/monitoring/Dockerfile.prometheus'];

function labels(text: string): Map<string, string> {
  const joined = text.replace(/\\\n/g, ' ');
  const found = new Map<string, string>();
  for (const line of joined.split('\n').filter((l) => /^LABEL\s/.test(l))) {
    for (const m of line.matchAll(/([a-z0-9.]+)="([^"]*)"/g)) found.set(m[1]!, m[2]!);
  }
  return found;
}

function argDefault(text: string, name: string): string | undefined {
  return new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(text)?.[1];
}

describe('OCI labels of the shipped images', () => {
  it('every shipped image names its source repository from SOURCE_URL, with one https default shared by all, and carries version, revision and licence', () => {
    const defaults = new Set<string>();
    for (const file of SHIPPED) {
      const text = readFileSync(join(PROJECT, file), 'utf8');
      const l = labels(text);
      assert.equal(l.get('org.opencontainers.image.source'), '${SOURCE_URL}', `${file}: the source label must come from the build argument scripts/lib/images.sh sets`);
      assert.equal(l.get('org.opencontainers.image.version'), '${VERSION}', file);
      assert.equal(l.get('org.opencontainers.image.revision'), '${REVISION}', file);
      assert.equal(l.get('org.opencontainers.image.licenses'), 'Apache-2.0', file);
      const source = argDefault(text, 'SOURCE_URL');
      assert.ok(source !== undefined, `${file}: no ARG SOURCE_URL default`);
      assert.match(source, /^https:\/\/[^/]+\/\S+$/, `${file}: ${source}`);
      assert.doesNotMatch(source, /\.invalid\b|example\./, `${file}: ${source} is a placeholder host`);
      defaults.add(source);
    }
    assert.equal(defaults.size, 1, `the shipped images disagree on their source: ${[...defaults].join(', ')}`);
  });

  it('the build passes the release\'s source URL to every image it builds, and the workflow passes GitHub\'s', () => {
    const images = readFileSync(join(PROJECT, 'scripts/lib/images.sh'), 'utf8');
    assert.match(images, /--build-arg "SOURCE_URL=\$NONSTOP_IMAGE_SOURCE"/);
    const workflow = readFileSync(join(PROJECT, '.github/workflows/images.yml'), 'utf8');
    const builds = workflow.match(/uses: docker\/build-push-action@/g) ?? [];
    const passes = workflow.match(/SOURCE_URL=\$\{\{ github\.server_url \}\}\/\$\{\{ github\.repository \}\}/g) ?? [];
    assert.ok(builds.length > 0, 'no build-push-action step in the workflow');
    assert.equal(passes.length, builds.length, 'a build-push-action step without SOURCE_URL');
  });
});
