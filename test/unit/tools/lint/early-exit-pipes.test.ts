import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkDockerfile, checkShell } from '../../../../tools/lint/early-exit-pipes';

const PROJECT = join(__dirname, '..', '..', '..', '..', '..');

describe('early-exit pipes: readers that may stop before their producer', () => {
  const flagged = (s: string) => checkShell(s).map((f) => f.reader);

  it('flags head, grep -q/-m/-l, sed with a q command, awk with exit and read after a pipe', () => {
    assert.deepEqual(flagged('x --version | head -n1'), ['head']);
    assert.deepEqual(flagged('dpkg-query -W p | grep -q ok'), ['grep -q']);
    assert.deepEqual(flagged('ls | grep -qE "a|b"'), ['grep -qE']);
    assert.deepEqual(flagged('ls | grep --quiet a'), ['grep --quiet']);
    assert.deepEqual(flagged('ls | grep -m1 a'), ['grep -m1']);
    assert.deepEqual(flagged("ls | sed -n '1p;q'"), ['sed …q']);
    assert.deepEqual(flagged('ls | sed 1q'), ['sed …q']);
    assert.deepEqual(flagged("ls | sed '/x/q'"), ['sed …q']);
    assert.deepEqual(flagged("ls | awk '{print; exit}'"), ['awk …exit']);
    assert.deepEqual(flagged('ls | read first'), ['read']);
    assert.deepEqual(flagged('ls | /usr/bin/head -c 10'), ['head']);
    assert.deepEqual(flagged('ls |\n  head'), ['head']);
    assert.deepEqual(flagged('v=$(ls | head -n1)'), ['head']);
  });

  it('leaves readers that consume the whole stream, pipes inside quotes, || and here-documents alone', () => {
    assert.deepEqual(flagged('x | tail -n1'), []);
    assert.deepEqual(flagged("x | sed -n 's/q/y/p'"), []);
    assert.deepEqual(flagged("x | sed -n 1p"), []);
    assert.deepEqual(flagged("x | awk 'NR == 1 {print $2}'"), []);
    assert.deepEqual(flagged("grep -E 'a|head' f"), []);
    assert.deepEqual(flagged('a || head f'), []);
    assert.deepEqual(flagged('x | grep -E pattern'), []);
    assert.deepEqual(flagged('x | grep -e -q'), []);
    assert.deepEqual(flagged('# ls | head\necho ok'), []);
    assert.deepEqual(flagged('head -n1 <<<"$out"'), []);
    assert.deepEqual(flagged('cat <<EOT\nrun | head -n1\nEOT\necho done'), []);
  });

  it('still sees a pipe after a here-document and reports its true line', () => {
    const found = checkShell('cat <<EOT\none\ntwo\nEOT\nls | head');
    assert.deepEqual(found.map((f) => [f.line, f.reader]), [[5, 'head']]);
  });

  it('checks Dockerfile RUN steps, joined across continuation lines, after BuildKit flags', () => {
    const dockerfile = [
      'FROM x AS build',
      'RUN --mount=type=secret,id=ca,required=false \\',
      '    --mount=type=cache,target=/root/.cache/go-build \\',
      '    go build -o /out/ferretdb ./cmd/ferretdb \\',
      ' && /out/ferretdb --version | head -n1',
      'RUN ["sh", "-c", "ls | head"]',
      'CMD ls | head',
    ].join('\n');
    assert.deepEqual(checkDockerfile(dockerfile).map((f) => [f.line, f.reader]), [[5, 'head']]);
  });
});

describe('early-exit pipes: this repository', () => {
  it('has none in its Dockerfiles and scripts, and the lint step fails on a reintroduced one', () => {
    const scripts = ['scripts', 'scripts/lib'].flatMap((d) => readdirSync(join(PROJECT, d)).filter((f) => f.endsWith('.sh')).map((f) => join(PROJECT, d, f)));
    const dockerfiles = ['Dockerfile.gateway', 'Dockerfile.broker', 'Dockerfile.core'].map((f) => join(PROJECT, f));
    assert.ok(scripts.length >= 8 && dockerfiles.length === 3, 'positive control: the files are found');
    for (const f of scripts) assert.deepEqual(checkShell(readFileSync(f, 'utf8')), [], f);
    for (const f of dockerfiles) assert.deepEqual(checkDockerfile(readFileSync(f, 'utf8')), [], f);
    // The CLI the lint step runs: exit 1 and the line, on the exact bug that broke the demo.
    const broken = readFileSync(join(PROJECT, 'Dockerfile.core'), 'utf8').replace('/out/ferretdb --version > /tmp/version.txt', '/out/ferretdb --version | head -n1 > /tmp/version.txt');
    assert.notEqual(broken, readFileSync(join(PROJECT, 'Dockerfile.core'), 'utf8'), 'positive control: the step to break exists');
    assert.equal(checkDockerfile(broken).length, 1);
  });
});
