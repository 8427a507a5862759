/**
 * Lint step: fails when a Dockerfile RUN step or a shell script pipes into a reader that may
 * stop early (see early-exit-pipes.ts for why). Prints one line per finding.
 *
 *   node dist/tools/lint/check-pipes.js <file>...   (Dockerfiles by name: Dockerfile*, *.Dockerfile)
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { checkDockerfile, checkShell } from './early-exit-pipes';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: check-pipes.js <file>...\n');
  process.exit(2);
}
let count = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const name = basename(file);
  const isDockerfile = name.startsWith('Dockerfile') || name.endsWith('.Dockerfile');
  for (const f of isDockerfile ? checkDockerfile(text) : checkShell(text)) {
    count++;
    process.stdout.write(`${file}:${f.line}: pipe into \`${f.reader}\`, which may stop reading early; under pipefail its producer dies of SIGPIPE (141): ${f.pipeline}\n`);
  }
}
process.stdout.write(`check-pipes: ${files.length} files, ${count} early-exit pipes\n`);
process.exit(count > 0 ? 1 : 0);
