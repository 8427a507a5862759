import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

/** One measured figure beside its one baseline. */
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

/** A figure for the subject and for each of several baselines, measured in the same rounds. */
export interface ComparisonRow {
  scenario: string;
  metric: string;
  /** One per column of the comparison. */
  values: string[];
  /** The subject against each baseline (columns[1..]). */
  against: string[];
  note: string;
  target?: string;
  met?: boolean;
}

export interface Comparison {
  /** The subject first, then each baseline. */
  columns: string[];
  rows: ComparisonRow[];
}

/** A curve: one row per point, its own columns, and notes under it (the curves section). */
export interface CurveTable {
  title: string;
  columns: string[];
  /** One per point, a cell per column. */
  rows: string[][];
  notes: string[];
}

/** What a section's run returns: a table of either kind, notes under it, and why not to publish it. */
export interface SectionResult {
  rows?: Row[];
  comparison?: Comparison;
  /** Curves, each a table of its own, rendered before the section's notes. */
  curves?: CurveTable[];
  notes?: string[];
  /** Reasons the figures must not be published (busy host with BENCH_ALLOW_BUSY, too few rounds); empty when they may. */
  unreported: string[];
  /** Every run behind the table, for a reader who wants to check it (kept in the results file, not rendered). */
  runs?: RunSummary[];
}

/** One measured run, as the results file keeps it. */
export interface RunSummary {
  scenario: string;
  path: string;
  /** 1-based round, and the run's place within it. */
  round: number;
  position: number;
  windowStart: string;
  warmupSeconds: number;
  okPerSecond: number;
  sent: number;
  failed: number;
  statuses: Record<string, number>;
  latencyMs: { p50: number | null; p99: number | null; p999: number | null; max: number | null };
  /** Cores each watched container used over the window. */
  cores: Record<string, number>;
  /** The same by process name within each container (host.HostWindow.oursByProcess). */
  coresByProcess: Record<string, Record<string, number>>;
  host: { other: number; otherContainers: number; otherHost: number; stealPercent: number; engine: number; kernel: number; interrupts: number; loadAvg1: number };
  edgeSkewMs: number;
}

/** A section's results file, bench/results/<name>.json. */
export interface SectionRecord extends SectionResult {
  /** Results written by this harness; older files lack it and are not reported. */
  format: 2;
  name: string;
  title: string;
  command: string;
  /** When the section started, ISO. */
  at: string;
  elapsedSeconds: number;
  machine: string;
  /** The busy-host checks of the whole section: before it, and host processes over it. */
  host: string[];
}

/** A full `npm run bench`: how long it took, for the header. */
export interface RunRecord {
  at: string;
  elapsedSeconds: number;
  sections: string[];
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

const minutes = (s: number): string => `${Math.round(s / 6) / 10} min`;
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const targetText = (target: string | undefined, met: boolean | undefined): string => (target ? `${target} ${met === undefined ? '' : met ? '✅ met' : '❌ missed'}` : '');

/**
 * BENCHMARKS.md (or, for figures that must not be published, a file beside the results):
 * every figure with the command that made it, when, on what machine, and how long it took.
 * Everything comes from the results files; the prose in bench/notes.md has no figures.
 */
export function renderReport(root: string, sections: SectionRecord[], lastFullRun: RunRecord | undefined, unreported: string[]): string {
  const lines = ['# Benchmarks', ''];
  if (unreported.length > 0) {
    lines.push('> **Not for publication**: these figures were measured under conditions the harness does not report on:', ...unreported.map((u) => `> - ${u}`), '');
  }
  lines.push(
    'Written by `npm run bench` from its results files (bench/results/); no figure here is copied in by hand. ' +
      'Every figure is measured side by side with its baselines in the same run, and each section says when, on what machine, and how long it took.',
    'Timings on these machines are noisy: read the ratios and the spreads, not single numbers.',
    lastFullRun
      ? `\`npm run bench\` runs every section (${minutes(lastFullRun.elapsedSeconds)} here on ${lastFullRun.at.slice(0, 16).replace('T', ' ')} UTC, images already built); \`npm run bench -- <section>\` one of them.`
      : '`npm run bench` runs every section; `npm run bench -- <section>` one of them.',
    '',
  );
  for (const s of sections) {
    lines.push(`## ${s.title}`, '', `Command: \`${s.command}\` — measured ${s.at.slice(0, 16).replace('T', ' ')} UTC on ${s.machine}, ${minutes(s.elapsedSeconds)}.`, '');
    if (s.rows && s.rows.length > 0) {
      lines.push('| scenario | metric | nonstop | baseline | ratio | target | notes |', '|---|---|---|---|---|---|---|');
      for (const r of s.rows) {
        lines.push(`| ${cell(r.scenario)} | ${cell(r.metric)} | ${cell(r.value)} | ${cell(r.baseline)} | ${Number.isFinite(r.ratio) ? r.ratio : '—'} | ${targetText(r.target, r.met)} | ${cell(r.note)} |`);
      }
      lines.push('');
    }
    if (s.comparison) {
      const [subject, ...baselines] = s.comparison.columns;
      const head = ['scenario', 'metric', ...s.comparison.columns, ...baselines.map((b) => `${subject} against ${b}`), 'target', 'notes'];
      lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
      for (const r of s.comparison.rows) {
        lines.push(`| ${[r.scenario, r.metric, ...r.values, ...r.against, targetText(r.target, r.met), r.note].map(cell).join(' | ')} |`);
      }
      lines.push('');
    }
    for (const curve of s.curves ?? []) {
      lines.push(`### ${curve.title}`, '', `| ${curve.columns.map(cell).join(' | ')} |`, `|${curve.columns.map(() => '---').join('|')}|`);
      for (const row of curve.rows) lines.push(`| ${row.map(cell).join(' | ')} |`);
      lines.push('');
      for (const n of curve.notes) lines.push(n, '');
    }
    for (const n of [...(s.notes ?? []), ...s.host]) lines.push(n, '');
  }
  const notes = join(root, 'bench', 'notes.md');
  if (existsSync(notes)) lines.push(readFileSync(notes, 'utf8').trimEnd(), '');
  return `${lines.join('\n')}\n`;
}
