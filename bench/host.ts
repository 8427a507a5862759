import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { cgroupAt, containerCgroup, parentCgroup, parseProcCgroup, readCpuNs, type CgroupCpu } from './container-stats';
import { round } from './stats';

/**
 * What the machine did during a measured window, split by who did it: the containers under
 * test, other containers, the Docker engine, kernel threads, this process, and every other
 * process. A figure measured while other work competed for the same cores is not one to
 * publish; the benchmark refuses it (`busyReasons`, HostBusyError).
 */

/** The aggregate "cpu" line of /proc/stat, in clock ticks. */
export interface ProcStat {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
}

export function parseProcStat(text: string): ProcStat {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate cpu line');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (steal === undefined || [user, nice, system, idle, iowait, irq, softirq, steal].some((x) => !Number.isFinite(x))) throw new Error(`unreadable /proc/stat cpu line: ${line}`);
  return { user: user!, nice: nice!, system: system!, idle: idle!, iowait: iowait!, irq: irq!, softirq: softirq!, steal };
}

/** PF_KTHREAD in /proc/<pid>/stat flags: a kernel thread. */
const PF_KTHREAD = 0x00200000;

/**
 * The parent, own CPU ticks and reaped children's ticks (cutime + cstime) from
 * /proc/<pid>/stat: what tells this benchmark's own child processes (a FerretDB it started)
 * from other work, and what they spent, ended ones included (harnessTicks).
 */
export function parsePidFamily(text: string): { ppid: number; ticks: number; childTicks: number } {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`unreadable /proc/<pid>/stat: ${text.slice(0, 80)}`);
  // After comm: state(3), ppid(4), …, utime(14), stime(15), cutime(16), cstime(17).
  const fields = text.slice(close + 2).split(' ');
  const out = { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), childTicks: Number(fields[13]) + Number(fields[14]) };
  if (!Object.values(out).every(Number.isFinite)) throw new Error(`unreadable /proc/<pid>/stat: ${text.slice(0, 120)}`);
  return out;
}

/**
 * The CPU ticks of every process this one started, and of theirs, so far: each live
 * descendant's own and its reaped children's, and what this process reaped. The difference
 * between two snapshots is what they spent in between, whether they started, ended or ran
 * throughout (a descendant's ticks move from its own count to its parent's cutime when it is
 * reaped, so they are counted once). Also returns the descendants, so they are not counted
 * as other work. Pure.
 */
export function harnessTicks(self: number, selfChildTicks: number, procs: ReadonlyMap<number, { ppid: number; ticks: number; childTicks: number }>): { ticks: number; descendants: Set<number> } {
  const children = new Map<number, number[]>();
  for (const [pid, p] of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  const descendants = new Set<number>();
  const queue = [...(children.get(self) ?? [])];
  let ticks = selfChildTicks;
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (descendants.has(pid)) continue;
    descendants.add(pid);
    const p = procs.get(pid)!;
    ticks += p.ticks + p.childTicks;
    queue.push(...(children.get(pid) ?? []));
  }
  return { ticks, descendants };
}

/**
 * comm, whether it is a kernel thread, and its own CPU ticks from /proc/<pid>/stat. Not its
 * reaped children's (cutime/cstime): those arrive all at once when a child ends, so a shell
 * reaping a long test run, or a containerd shim reaping a container's processes (already
 * counted in the container's cgroup), would show minutes of CPU inside a window of seconds.
 */
export function parsePidStat(text: string): { comm: string; kernel: boolean; ticks: number } {
  // comm may hold spaces and parentheses: it runs from the first "(" to the last ")".
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`unreadable /proc/<pid>/stat: ${text.slice(0, 80)}`);
  // After comm, proc(5)'s fields 3…: state, ppid, pgrp, session, tty_nr, tpgid, flags(9), …, utime(14), stime(15).
  const fields = text.slice(close + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) throw new Error(`unreadable /proc/<pid>/stat times: ${text.slice(0, 120)}`);
  return { comm: text.slice(open + 1, close), kernel: (Number(fields[6]) & PF_KTHREAD) !== 0, ticks };
}

/**
 * The Docker engine's own processes: while the benchmark runs they move our containers'
 * logs, execs and health checks, so their CPU is reported apart, not as other work (except
 * before a section, when nothing of ours runs: see busyReasons). The short-lived runc
 * processes of execs and health checks are not among them; the total counts them as other
 * host work.
 */
const ENGINE = new Set(['dockerd', 'containerd', 'containerd-shim', 'containerd-shim-runc-v2', 'docker-proxy']);

type ProcKind = 'engine' | 'kernel' | 'other';

let clockTicks: number | undefined;
/** USER_HZ, the unit of /proc/stat and /proc/<pid>/stat times. */
export function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return clockTicks;
}

export interface HostSnapshot {
  /** Epoch ms of the reads, sub-millisecond. */
  at: number;
  stat: ProcStat;
  /** Every container's CPU together (their parent cgroup), ns. */
  parentNs: number;
  /** Each container under test, ns. */
  ours: Record<string, number>;
  /** This process and every process it started (harnessTicks), µs. */
  benchUs: number;
  /** Every process outside the containers, but this one and those it started: name, kind, ticks. */
  procs: Map<number, { comm: string; kind: ProcKind; ticks: number }>;
  /** Every process inside a container under test: the container's name, the process's, ticks. */
  inside: Map<number, { container: string; comm: string; ticks: number }>;
}

/** Cores used over a window, by who used them. */
export interface HostWindow {
  seconds: number;
  /** Cores of the machine. */
  cores: number;
  /** Each container under test. */
  ours: Record<string, number>;
  /** Each container under test by process name (all its processes of that name, threads included): a profile by process. */
  oursByProcess: Record<string, Record<string, number>>;
  oursTotal: number;
  /** Every other container, image builds included (the containers' parent cgroup less ours). */
  otherContainers: number;
  engine: number;
  /** Kernel threads (kworkers, jbd2, ksoftirqd…): mostly I/O and packets for whoever is busy; reported, not counted as other work. */
  kernel: number;
  bench: number;
  /** Processes outside every container, other than the engine, kernel threads and this benchmark. */
  otherHost: number;
  /** The busiest of those, for the reader of a refusal. */
  topOtherHost: { comm: string; cores: number }[];
  /** irq + softirq: mostly the kernel moving our own packets; reported, not counted as other work. */
  interrupts: number;
  /** Time the hypervisor ran someone else on our vCPUs, as a fraction of the machine's time. */
  stealFraction: number;
  /** otherContainers + otherHost: what the busy-host check limits. */
  other: number;
  /** 1-minute load average at the end of the window. */
  loadAvg1: number;
}

export interface BusyThresholds {
  /** Cores of other work (other containers + other host processes) allowed during a window. */
  maxOtherCores: number;
  /** Steal allowed, as a fraction of the machine's CPU time. */
  maxStealFraction: number;
}

const topText = (w: HostWindow): string => (w.topOtherHost.length === 0 ? '' : `: ${w.topOtherHost.map((p) => `${p.comm} ${round(p.cores)}`).join(', ')}`);

function stealReason(w: HostWindow, t: BusyThresholds): string[] {
  return w.stealFraction <= t.maxStealFraction ? [] : [`steal ${round(w.stealFraction * 100, 1)} % > ${round(t.maxStealFraction * 100, 1)} %`];
}

/**
 * Why a window does not count as quiet; empty when it does. Pure. `engineIsOther`: nothing
 * of the benchmark ran in the window, so the Docker engine worked for others only.
 */
export function busyReasons(w: HostWindow, t: BusyThresholds, opts: { engineIsOther?: boolean } = {}): string[] {
  const engine = opts.engineIsOther ? w.engine : 0;
  const other = w.other + engine;
  const parts = `other containers ${round(w.otherContainers)}, other host processes ${round(w.otherHost)}${topText(w)}${opts.engineIsOther ? `, Docker engine ${round(engine)}` : ''}`;
  return [...(other <= t.maxOtherCores ? [] : [`other work ${round(other)} cores > ${t.maxOtherCores} (${parts})`]), ...stealReason(w, t)];
}

/**
 * The check for a whole section whose own containers come and go (stacks started and
 * removed, containers restarted): other containers cannot be told from ours there, so only
 * host processes outside every container and steal are limited. Pure.
 */
export function hostOnlyBusyReasons(w: HostWindow, t: BusyThresholds): string[] {
  const other = w.otherHost <= t.maxOtherCores ? [] : [`other host processes ${round(w.otherHost)} cores > ${t.maxOtherCores}${topText(w)}`];
  return [...other, ...stealReason(w, t)];
}

/** The machine was busier than the thresholds allow: figures from it are not reported. */
export class HostBusyError extends Error {
  constructor(
    readonly when: string,
    readonly reasons: string[],
  ) {
    super(`host busy ${when}: ${reasons.join('; ')}`);
    this.name = 'HostBusyError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * Reads every counter at once: /proc/stat, the containers' parent cgroup, each container
 * under test, this process, and every other process. All are plain file reads (no Docker
 * API call): the counters that split the window come first, within a millisecond of `at`,
 * then the per-process scan (a few ms), which only sorts out who the rest was.
 */
export class HostMeter {
  /** Container name by cgroup path, to tell whose a process inside the parent is. */
  private readonly nameByPath: Map<string, string>;

  private constructor(
    private readonly ours: Record<string, CgroupCpu>,
    private readonly parent: CgroupCpu,
  ) {
    this.nameByPath = new Map(Object.entries(ours).map(([n, cg]) => [cg.path, n]));
  }

  /**
   * `watch`: the containers under test, by name (may be none). Every container's CPU is
   * counted in one parent cgroup, Docker's cgroup-parent: /docker with the cgroupfs driver,
   * system.slice with systemd's.
   */
  static async create(docker: Docker, watch: Record<string, Docker.Container>): Promise<HostMeter> {
    const info = (await docker.info()) as { CgroupDriver?: string };
    const parent = cgroupAt(info.CgroupDriver === 'systemd' ? '/system.slice' : '/docker');
    const ours: Record<string, CgroupCpu> = {};
    for (const [n, c] of Object.entries(watch)) {
      const cg = await containerCgroup(c);
      if (parentCgroup(cg).path !== parent.path) throw new Error(`${n} is in ${cg.path}, not under ${parent.path}`);
      ours[n] = cg;
    }
    return new HostMeter(ours, parent);
  }

  get cgroupVersion(): 1 | 2 {
    return this.parent.version;
  }

  snapshot(): HostSnapshot {
    const at = performance.timeOrigin + performance.now();
    const stat = parseProcStat(readFileSync('/proc/stat', 'utf8'));
    const parentNs = readCpuNs(this.parent);
    const ours = Object.fromEntries(Object.entries(this.ours).map(([n, cg]) => [n, readCpuNs(cg)]));
    const usage = process.cpuUsage();
    const { procs, inside, harnessUs } = this.processes();
    return { at, stat, parentNs, ours, benchUs: usage.user + usage.system + harnessUs, procs, inside };
  }

  /** A snapshot taken at an epoch time (or at once if it has passed); `at` says when it really was. */
  async snapshotAt(epochMs: number): Promise<HostSnapshot> {
    const wait = epochMs - (performance.timeOrigin + performance.now());
    if (wait > 0) await sleep(wait);
    return this.snapshot();
  }

  /**
   * Every process outside the containers but this one and those it started (a FerretDB run
   * on the host is the benchmark's own work, not other work), and what those spent, in µs;
   * and every process inside a container under test, by container.
   */
  private processes(): { procs: HostSnapshot['procs']; inside: HostSnapshot['inside']; harnessUs: number } {
    const out: HostSnapshot['procs'] = new Map();
    const inside: HostSnapshot['inside'] = new Map();
    const family = new Map<number, { ppid: number; ticks: number; childTicks: number }>();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      try {
        const text = readFileSync(`/proc/${name}/stat`, 'utf8');
        family.set(Number(name), parsePidFamily(text));
        const s = parsePidStat(text);
        if (!s.kernel) {
          // A process inside the containers' parent is already counted there.
          const cg = parseProcCgroup(readFileSync(`/proc/${name}/cgroup`, 'utf8'));
          const path = this.parent.version === 1 ? cg.cpuacct : cg.unified;
          if (path !== undefined && (path === this.parent.path || path.startsWith(`${this.parent.path}/`))) {
            const container = this.nameByPath.get(path);
            // Node names its main thread, and so the process's comm, "MainThread".
            if (container !== undefined) inside.set(Number(name), { container, comm: s.comm === 'MainThread' ? 'node' : s.comm, ticks: s.ticks });
            continue;
          }
        }
        out.set(Number(name), { comm: s.comm, kind: s.kernel ? 'kernel' : ENGINE.has(s.comm) ? 'engine' : 'other', ticks: s.ticks });
      } catch {
        // The process ended between readdir and the read.
      }
    }
    const self = parsePidFamily(readFileSync('/proc/self/stat', 'utf8'));
    const harness = harnessTicks(process.pid, self.childTicks, family);
    for (const pid of harness.descendants) out.delete(pid);
    return { procs: out, inside, harnessUs: (harness.ticks * 1e6) / ticksPerSecond() };
  }
}

/** Splits the CPU used between two snapshots by who used it. */
export function hostWindow(a: HostSnapshot, b: HostSnapshot, cores = cpus().length, hz = ticksPerSecond()): HostWindow {
  const seconds = (b.at - a.at) / 1000;
  const d = (k: keyof ProcStat): number => b.stat[k] - a.stat[k];
  const tickCores = (ticks: number): number => ticks / hz / seconds;
  const nsCores = (ns: number): number => ns / 1e9 / seconds;
  const ours = Object.fromEntries(Object.keys(b.ours).map((n) => [n, nsCores(b.ours[n]! - (a.ours[n] ?? b.ours[n]!))]));
  const oursTotal = Object.values(ours).reduce((s, x) => s + x, 0);
  const parent = nsCores(b.parentNs - a.parentNs);
  // A process present at one edge only is left out here: its share of the window is unknown.
  // The total below (from /proc/stat) still counts it, as other host work.
  const byKind: Record<ProcKind, number> = { engine: 0, kernel: 0, other: 0 };
  const others: { comm: string; cores: number }[] = [];
  for (const [pid, p] of b.procs) {
    const before = a.procs.get(pid);
    if (before === undefined || before.comm !== p.comm) continue;
    byKind[p.kind] += p.ticks - before.ticks;
    if (p.kind === 'other' && p.ticks > before.ticks) others.push({ comm: p.comm, cores: tickCores(p.ticks - before.ticks) });
  }
  const oursByProcess: Record<string, Record<string, number>> = {};
  for (const [pid, p] of b.inside) {
    const before = a.inside.get(pid);
    if (before === undefined || before.comm !== p.comm || before.container !== p.container) continue;
    const of = (oursByProcess[p.container] ??= {});
    of[p.comm] = (of[p.comm] ?? 0) + tickCores(p.ticks - before.ticks);
  }
  const engine = tickCores(byKind.engine);
  const kernel = tickCores(byKind.kernel);
  const bench = (b.benchUs - a.benchUs) / 1e6 / seconds;
  const processes = tickCores(d('user') + d('nice') + d('system'));
  const otherContainers = Math.max(0, parent - oursTotal);
  // Tick-sampled totals against exact cgroup counters: a few hundredths of a core of
  // rounding either way, so a small negative remainder is zero.
  const otherHost = Math.max(0, processes - parent - engine - kernel - bench);
  const all = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;
  const total = all.reduce((s, k) => s + d(k), 0);
  return {
    seconds,
    cores,
    ours,
    oursByProcess,
    oursTotal,
    otherContainers,
    engine,
    kernel,
    bench,
    otherHost,
    topOtherHost: others.sort((x, y) => y.cores - x.cores).slice(0, 3).filter((p) => p.cores >= 0.01),
    interrupts: tickCores(d('irq') + d('softirq')),
    stealFraction: total > 0 ? d('steal') / total : 0,
    other: otherContainers + otherHost,
    loadAvg1: loadavg()[0]!,
  };
}

export interface Worst {
  other: number;
  otherContainers: number;
  otherHost: number;
  stealFraction: number;
  engine: number;
  kernel: number;
  interrupts: number;
}

/** The largest of each figure over several windows (the worst a run saw). */
export function worstOf(ws: readonly HostWindow[]): Worst {
  const max = (f: (w: HostWindow) => number): number => ws.reduce((m, w) => Math.max(m, f(w)), 0);
  return {
    other: max((w) => w.other),
    otherContainers: max((w) => w.otherContainers),
    otherHost: max((w) => w.otherHost),
    stealFraction: max((w) => w.stealFraction),
    engine: max((w) => w.engine),
    kernel: max((w) => w.kernel),
    interrupts: max((w) => w.interrupts),
  };
}

/** One window in words, every figure in cores except steal. */
export function windowText(w: HostWindow): string {
  return (
    `other work ${round(w.other)} cores (other containers ${round(w.otherContainers)}, other host processes ${round(w.otherHost)}${topText(w)}), ` +
    `steal ${round(w.stealFraction * 100, 1)} %, Docker engine ${round(w.engine)}, kernel threads ${round(w.kernel)}, interrupts ${round(w.interrupts)}, this benchmark ${round(w.bench)}, load avg ${round(w.loadAvg1, 1)}`
  );
}

export interface QuietCheck {
  window: HostWindow;
  reasons: string[];
  /** Seconds spent waiting for a quiet window before this one. */
  waitedSeconds: number;
}

/**
 * Measures `seconds` with the stack idle, again and again until a window is quiet or
 * `waitSeconds` have passed; returns the last window and why it was busy, if it was.
 */
export async function quietCheck(meter: HostMeter, t: BusyThresholds, seconds: number, waitSeconds: number, opts: { engineIsOther?: boolean } = {}): Promise<QuietCheck> {
  const started = Date.now();
  for (;;) {
    const a = meter.snapshot();
    await sleep(seconds * 1000);
    const window = hostWindow(a, meter.snapshot());
    const reasons = busyReasons(window, t, opts);
    const elapsed = (Date.now() - started) / 1000;
    if (reasons.length === 0 || elapsed >= waitSeconds) return { window, reasons, waitedSeconds: round(elapsed - window.seconds, 1) };
    process.stdout.write(`  host busy (${reasons.join('; ')}); waiting for a quiet ${seconds} s\n`);
  }
}
