/**
 * The suite's runner: mocha with the spec reporter over the compiled tests, then one plain
 * closing line "tests: N passed, N failed, N skipped" that CI and humans can read.
 * A skipped test (mocha "pending") is reported as skipped, never counted as passed.
 *
 *   node dist/test/run.js [unit|integration|security|e2e ...] [--grep pattern]
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Mocha from 'mocha';

const LAYERS = ['unit', 'integration', 'security', 'e2e'] as const;

function testFiles(dir: string): string[] {
  let out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return [];
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(testFiles(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const grepAt = args.indexOf('--grep');
const grep = grepAt >= 0 ? args[grepAt + 1] : undefined;
const layers = args.filter((a, i) => (LAYERS as readonly string[]).includes(a) && (grepAt < 0 || i !== grepAt + 1));
const chosen = layers.length > 0 ? layers : [...LAYERS];

const mocha = new Mocha({ reporter: 'spec', timeout: 30_000, slow: 2000, ...(grep ? { grep } : {}) });
for (const layer of chosen) for (const f of testFiles(join(__dirname, layer))) mocha.addFile(f);

const runner = mocha.run((failures) => {
  const s = runner.stats;
  const passed = s?.passes ?? 0;
  const failed = s?.failures ?? failures;
  const skipped = s?.pending ?? 0;
  process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  // Exit as mocha --exit does: a library's idle keep-alive socket or timer (dockerode's
  // agent, an ioredis reconnect timer) must not keep CI waiting after the last test.
  process.exit(failed > 0 ? 1 : 0);
});
