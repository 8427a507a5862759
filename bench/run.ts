/**
 * `npm run bench [-- section ...]`: brings up the stack through the Docker API and runs the
 * benchmark sections, each side by side with its baseline, then rewrites BENCHMARKS.md
 * from every section's latest results (bench/results/<section>.json).
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { upStack } from '../test/support/stack/fixture';
import { REPO_ROOT } from '../test/support/stack/build';
import { chainBench } from './chain';
import { footprintBench } from './footprint';
import { knockBench } from './knock';
import { benchStack } from './load';
import { recoveryBench } from './recovery';
import { writeReport, type Row } from './report';

interface Section {
  title: string;
  command: string;
  rows: Row[];
}

const SECTIONS: Record<string, { title: string; run: () => Promise<Row[]> }> = {
  knock: {
    title: 'The knock: time to open, and under a SYN flood (knockd as the baseline)',
    run: async () => {
      const stack = await upStack({ NONSTOP_KNOCK_MODE: 'static', NONSTOP_KNOCK_SEQUENCE: '7000,8000,9000', NONSTOP_KNOCK_WINDOW_SECONDS: '30' });
      try {
        return await knockBench(stack, Number(process.env.BENCH_ROUNDS ?? '20'));
      } finally {
        await stack.down();
      }
    },
  },
  chain: {
    title: 'Throughput and latency through the whole chain (requests straight to core as the baseline)',
    run: async () => {
      const stack = await benchStack();
      try {
        return await chainBench(stack, {
          seconds: Number(process.env.BENCH_SECONDS ?? '12'),
          warmupSeconds: 3,
          concurrency: Number(process.env.BENCH_CONCURRENCY ?? '32'),
          halfLoadRounds: Number(process.env.BENCH_HALF_LOAD_ROUNDS ?? '3'),
          halfLoadSeconds: Number(process.env.BENCH_HALF_LOAD_SECONDS ?? '4'),
        });
      } finally {
        await stack.down();
      }
    },
  },
  recovery: {
    title: 'Recovery: broker start and gateway restart to traffic flowing (the container\'s own readiness as the baseline)',
    run: async () => {
      const stack = await benchStack();
      try {
        return await recoveryBench(stack, Number(process.env.BENCH_RECOVERY_ROUNDS ?? '3'));
      } finally {
        await stack.down();
      }
    },
  },
  footprint: {
    title: 'Footprint: image size over the base image, memory idle and loaded, stack start cold and warm',
    run: () => footprintBench(Number(process.env.BENCH_SECONDS ?? '12')),
  },
};

async function main(): Promise<void> {
  const startedAt = new Date();
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = wanted.length > 0 ? wanted : Object.keys(SECTIONS);
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  for (const name of names) {
    const section = SECTIONS[name];
    if (!section) throw new Error(`unknown section ${name} (${Object.keys(SECTIONS).join(', ')})`);
    process.stdout.write(`bench: ${name}...\n`);
    const rows = await section.run();
    for (const r of rows) process.stdout.write(`  ${r.scenario}: ${r.value} (baseline ${r.baseline}, ratio ${r.ratio})\n`);
    const out: Section = { title: section.title, command: `npm run bench -- ${name}`, rows };
    writeFileSync(join(resultsDir, `${name}.json`), JSON.stringify({ at: startedAt.toISOString(), ...out }, null, 2));
  }
  const sections = Object.keys(SECTIONS)
    .filter((n) => readdirSync(resultsDir).includes(`${n}.json`))
    .map((n) => JSON.parse(readFileSync(join(resultsDir, `${n}.json`), 'utf8')) as Section);
  writeReport(REPO_ROOT, sections, startedAt);
  process.stdout.write('bench: BENCHMARKS.md written\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
