/**
 * `npm run bench [-- section ...]`: brings up the stack through the Docker API and runs the
 * benchmark sections, each side by side with its baselines, then rewrites BENCHMARKS.md
 * from every section's latest results (bench/results/<section>.json).
 *
 * Before each section the machine must be quiet (host.quietCheck, nothing of ours running),
 * and over it no host process outside the containers may take more than the threshold; the
 * chain section also checks every measured window. A busy host ends the run with exit
 * code 2 and writes nothing. With BENCH_ALLOW_BUSY=1 (or fewer rounds than are published)
 * the run completes, but its figures go to bench/results/unreported/ and BENCHMARKS.md is
 * left as it is.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { upStack } from '../test/support/stack/fixture';
import { REPO_ROOT } from '../test/support/stack/build';
import { docker } from '../test/support/stack/docker';
import { atRestBench } from './at-rest';
import { chainBench } from './chain';
import { curvesBench } from './curves';
import { benchConfig, busyThresholds, quietWait, type BenchConfig } from './config';
import { footprintBench } from './footprint';
import { HostBusyError, HostMeter, hostOnlyBusyReasons, hostWindow, quietCheck, windowText } from './host';
import { knockBench } from './knock';
import { benchStack } from './load';
import { recoveryBench } from './recovery';
import { machine, renderReport, type RunRecord, type SectionRecord, type SectionResult } from './report';

const published = (rows: SectionResult['rows']): SectionResult => ({ rows: rows ?? [], unreported: [] });

const SECTIONS: Record<string, { title: string; run: (c: BenchConfig) => Promise<SectionResult> }> = {
  knock: {
    title: 'The knock: time to open, and under a SYN flood (knockd as the baseline)',
    run: async (c) => {
      const stack = await upStack({ NONSTOP_KNOCK_MODE: 'static', NONSTOP_KNOCK_SEQUENCE: '7000,8000,9000', NONSTOP_KNOCK_WINDOW_SECONDS: '30' });
      try {
        return published(await knockBench(stack, c.BENCH_ROUNDS));
      } finally {
        await stack.down();
      }
    },
  },
  chain: {
    title: 'Throughput and latency through the whole chain, against (a) straight to core, (b) an nginx TLS edge, (c) nginx + an ssh -R tunnel',
    run: async (c) => {
      const stack = await benchStack();
      try {
        return await chainBench(stack, c);
      } finally {
        await stack.down();
      }
    },
  },
  recovery: {
    title: "Recovery: broker start and gateway restart to traffic flowing (the container's own readiness as the baseline)",
    run: async (c) => {
      const stack = await benchStack();
      try {
        return published(await recoveryBench(stack, c.BENCH_RECOVERY_ROUNDS));
      } finally {
        await stack.down();
      }
    },
  },
  'at-rest': {
    title: 'Records at rest: encryption, erase and list on FerretDB (the store before encryption, a plain delete and reads by id as the baselines)',
    run: atRestBench,
  },
  curves: {
    title: 'Scale curves: throughput and p99 against body size, connections, brokers and gateways; the knock sniffer against tracked sources and SYN rate',
    run: curvesBench,
  },
  footprint: {
    title: 'Footprint: image size over the base image, memory idle and loaded, stack start cold and warm',
    run: async (c) => published(await footprintBench(c.BENCH_SECONDS)),
  },
};

const RESULTS = join(REPO_ROOT, 'bench', 'results');
const UNREPORTED = join(RESULTS, 'unreported');

async function runSection(name: string, c: BenchConfig): Promise<SectionRecord> {
  const section = SECTIONS[name]!;
  const thresholds = busyThresholds(c);
  const at = new Date();
  // Nothing of ours runs yet: every container and process counts as other work.
  const idle = await HostMeter.create(docker(), {});
  const before = await quietCheck(idle, thresholds, c.BENCH_QUIET_SECONDS, quietWait(c), { engineIsOther: true });
  const unreported: string[] = [];
  if (before.reasons.length > 0) {
    if (!c.BENCH_ALLOW_BUSY) throw new HostBusyError(`before the ${name} section`, before.reasons);
    unreported.push(`${name}: host busy before the section: ${before.reasons.join('; ')}`);
  }
  const start = idle.snapshot();
  const result = await section.run(c);
  const over = hostWindow(start, idle.snapshot());
  const during = hostOnlyBusyReasons(over, thresholds);
  if (during.length > 0) {
    if (!c.BENCH_ALLOW_BUSY) throw new HostBusyError(`during the ${name} section`, during);
    unreported.push(`${name}: host busy during the section: ${during.join('; ')}`);
  }
  unreported.push(...result.unreported.map((u) => `${name}: ${u}`));
  const host = [
    `Host before the section, ${c.BENCH_QUIET_SECONDS} s with nothing of this benchmark running (the Docker engine counted as other work)${before.waitedSeconds >= 1 ? ` (after waiting ${before.waitedSeconds} s for quiet)` : ''}: ${windowText(before.window)}. ` +
      `Over the whole section (${Math.round(over.seconds)} s): other host processes ${over.otherHost.toFixed(2)} cores, steal ${(over.stealFraction * 100).toFixed(1)} %. ` +
      `Limits: other work ≤ ${thresholds.maxOtherCores} cores, steal ≤ ${thresholds.maxStealFraction * 100} % (BENCH_MAX_OTHER_MILLICORES, BENCH_MAX_STEAL_PERCENT).`,
  ];
  return {
    format: 2,
    name,
    title: section.title,
    command: `npm run bench -- ${name}`,
    at: at.toISOString(),
    elapsedSeconds: Math.round((Date.now() - at.getTime()) / 1000),
    machine: machine(),
    host,
    ...result,
    unreported,
  };
}

function readRecord(path: string): SectionRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<SectionRecord>;
    return r.format === 2 ? (r as SectionRecord) : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const c = benchConfig();
  const started = new Date();
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = wanted.length > 0 ? wanted : Object.keys(SECTIONS);
  for (const n of names) if (!SECTIONS[n]) throw new Error(`unknown section ${n} (${Object.keys(SECTIONS).join(', ')})`);
  mkdirSync(UNREPORTED, { recursive: true });
  const records: SectionRecord[] = [];
  for (const name of names) {
    process.stdout.write(`bench: ${name}...\n`);
    const r = await runSection(name, c);
    for (const row of r.rows ?? []) process.stdout.write(`  ${row.scenario}: ${row.value} (baseline ${row.baseline}, ratio ${row.ratio})\n`);
    for (const row of r.comparison?.rows ?? []) {
      process.stdout.write(`  ${row.scenario} — ${row.metric}\n    ${r.comparison!.columns.map((col, i) => `${col}: ${row.values[i]}`).join(' | ')}\n    against: ${row.against.join(' | ')}\n`);
    }
    for (const curve of r.curves ?? []) {
      process.stdout.write(`  ${curve.title}\n    ${curve.columns.join(' | ')}\n${curve.rows.map((row) => `    ${row.join(' | ')}\n`).join('')}${curve.notes.map((n) => `    ${n}\n`).join('')}`);
    }
    process.stdout.write(`  ${name} took ${r.elapsedSeconds} s${r.unreported.length > 0 ? `; not for publication: ${r.unreported.join('; ')}` : ''}\n`);
    writeFileSync(join(r.unreported.length > 0 ? UNREPORTED : RESULTS, `${name}.json`), JSON.stringify(r, null, 2));
    records.push(r);
  }
  const elapsedSeconds = Math.round((Date.now() - started.getTime()) / 1000);
  const unreported = records.flatMap((r) => r.unreported);
  if (unreported.length > 0) {
    const out = join(UNREPORTED, 'BENCHMARKS.md');
    writeFileSync(out, renderReport(REPO_ROOT, records, undefined, unreported));
    process.stdout.write(`bench: ${elapsedSeconds} s; figures not for publication written to ${out}; BENCHMARKS.md left as it was\n`);
    return;
  }
  if (wanted.length === 0) {
    const run: RunRecord = { at: started.toISOString(), elapsedSeconds, sections: names };
    writeFileSync(join(RESULTS, 'run.json'), JSON.stringify(run, null, 2));
  }
  const lastFullRun = (() => {
    try {
      return JSON.parse(readFileSync(join(RESULTS, 'run.json'), 'utf8')) as RunRecord;
    } catch {
      return undefined;
    }
  })();
  const present = readdirSync(RESULTS);
  const sections = Object.keys(SECTIONS)
    .filter((n) => present.includes(`${n}.json`))
    .map((n) => readRecord(join(RESULTS, `${n}.json`)))
    .filter((r): r is SectionRecord => r !== undefined);
  writeFileSync(join(REPO_ROOT, 'BENCHMARKS.md'), renderReport(REPO_ROOT, sections, lastFullRun, []));
  process.stdout.write(`bench: ${elapsedSeconds} s; BENCHMARKS.md written\n`);
}

main().catch((err: unknown) => {
  if (err instanceof HostBusyError) {
    process.stderr.write(`bench refused: ${err.message}\nBENCHMARKS.md was not written (sections that finished before this one kept their results). Run again on a quiet machine, or set BENCH_ALLOW_BUSY=1 to measure anyway into bench/results/unreported/.\n`);
    process.exit(2);
  }
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
