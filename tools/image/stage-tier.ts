/**
 * Build-stage step of the Dockerfiles: copies into <out> exactly what one tier's image runs —
 * its compiled modules under dist/ and the npm packages they need under node_modules/ —
 * so each runtime stage takes one COPY and carries no other tier's code or libraries.
 *
 *   node dist/tools/image/stage-tier.js <tier> <project dir> <out dir>
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TIER_ENTRIES, isTier, packageClosure, traceModules, type Lockfile } from './tier-files';

function main(argv: string[]): void {
  const [tier, project, out] = argv;
  if (!tier || !project || !out || !isTier(tier)) {
    process.stderr.write(`usage: stage-tier.js <${Object.keys(TIER_ENTRIES).join('|')}> <project dir> <out dir>\n`);
    process.exit(2);
  }
  const dist = join(project, 'dist');
  const read = (path: string): string | undefined => {
    const file = join(dist, path);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  };
  const { modules, packages } = traceModules(TIER_ENTRIES[tier], read);
  for (const m of modules) {
    mkdirSync(dirname(join(out, 'dist', m)), { recursive: true });
    cpSync(join(dist, m), join(out, 'dist', m));
  }
  const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8')) as Lockfile;
  const paths = packageClosure(lock, packages);
  for (const p of paths) {
    // Nested node_modules are copied only for the entries the closure lists.
    cpSync(join(project, p), join(out, p), { recursive: true, filter: (src) => !src.slice(join(project, p).length).includes('/node_modules') });
  }
  const shipped = existsSync(join(out, 'node_modules')) ? readdirSync(join(out, 'node_modules')).length : 0;
  process.stdout.write(`${tier}: ${modules.length} modules, ${paths.length} packages (${shipped} top-level): ${packages.join(', ')}\n`);
}

main(process.argv.slice(2));
