import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

export interface Row {
  scenario: string;
  metric: string;
  value: string;
  baseline: string;
  /** value ÷ baseline, for the figure that matters (lower is better unless noted). */
  ratio: number;
  note: string;
  target?: string;
  met?: boolean;
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

/** Writes BENCHMARKS.md: every figure with the command that made it and the machine. */
export function writeReport(root: string, sections: { title: string; command: string; rows: Row[] }[], startedAt: Date): void {
  const lines = [
    '# Benchmarks',
    '',
    `Measured ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine()}, Docker engine on the same machine.`,
    'Every figure is measured side by side with its baseline in the same run; ratios compare the two.',
    'Timings on these machines are noisy: read the ratios, not the absolute numbers.',
    '`npm run bench` runs every section (about 7 minutes here); `npm run bench -- <section>` one of them.',
    '',
  ];
  for (const s of sections) {
    lines.push(`## ${s.title}`, '', `Command: \`${s.command}\``, '');
    lines.push('| scenario | metric | nonstop | baseline | ratio | target | notes |', '|---|---|---|---|---|---|---|');
    for (const r of s.rows) {
      const target = r.target ? `${r.target} ${r.met === undefined ? '' : r.met ? '✅ met' : '❌ missed'}` : '';
      lines.push(`| ${r.scenario} | ${r.metric} | ${r.value} | ${r.baseline} | ${Number.isFinite(r.ratio) ? r.ratio : '—'} | ${target} | ${r.note} |`);
    }
    lines.push('');
  }
  // The narrative (profiles, before/after) is kept by hand in bench/notes.md.
  const notes = join(root, 'bench', 'notes.md');
  if (existsSync(notes)) lines.push(readFileSync(notes, 'utf8').trimEnd(), '');
  writeFileSync(join(root, 'BENCHMARKS.md'), `${lines.join('\n')}\n`);
}
