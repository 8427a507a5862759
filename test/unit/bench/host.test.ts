import assert from 'node:assert/strict';
import { parseCpuStatNs, parseMountinfo, parseProcCgroup } from '../../../bench/container-stats';
import { busyReasons, hostOnlyBusyReasons, hostWindow, parsePidStat, parseProcStat, type HostSnapshot, type HostWindow, type ProcStat } from '../../../bench/host';

const HZ = 100;
const stat = (p: Partial<ProcStat>): ProcStat => ({ user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, ...p });

/** The processes outside the containers at one edge: dockerd, a kworker, and the named others. */
function procs(engine: number, kernel: number, others: Record<string, number>): HostSnapshot['procs'] {
  const out: HostSnapshot['procs'] = new Map();
  out.set(10, { comm: 'dockerd', kind: 'engine', ticks: engine });
  out.set(11, { comm: 'kworker/0:1', kind: 'kernel', ticks: kernel });
  Object.entries(others).forEach(([comm, ticks], i) => out.set(100 + i, { comm, kind: 'other', ticks }));
  return out;
}

/** Two snapshots 10 s apart on a 2-core machine (2,000 ticks of machine time in all). */
type Inside = HostSnapshot['inside'];

function window(over: { busyTicks: number; stealTicks?: number; parentS: number; ours: Record<string, number>; engineTicks?: number; kernelTicks?: number; otherTicks?: Record<string, number>; benchS?: number; inside?: [Inside, Inside] }): HostWindow {
  const steal = over.stealTicks ?? 0;
  const a: HostSnapshot = {
    at: 1_000_000,
    stat: stat({}),
    parentNs: 0,
    ours: Object.fromEntries(Object.keys(over.ours).map((k) => [k, 0])),
    benchUs: 0,
    procs: procs(0, 0, Object.fromEntries(Object.keys(over.otherTicks ?? {}).map((k) => [k, 0]))),
    inside: over.inside?.[0] ?? (new Map() as Inside),
  };
  const b: HostSnapshot = {
    at: 1_010_000,
    stat: stat({ user: over.busyTicks, idle: 2000 - over.busyTicks - steal, steal }),
    parentNs: over.parentS * 1e9,
    ours: Object.fromEntries(Object.entries(over.ours).map(([k, s]) => [k, s * 1e9])),
    benchUs: (over.benchS ?? 0) * 1e6,
    procs: procs(over.engineTicks ?? 0, over.kernelTicks ?? 0, over.otherTicks ?? {}),
    inside: over.inside?.[1] ?? (new Map() as Inside),
  };
  return hostWindow(a, b, 2, HZ);
}

const limits = { maxOtherCores: 0.15, maxStealFraction: 0.05 };

describe('bench host: who used the CPU in a window', () => {
  it('splits the machine into ours, other containers, the engine, kernel threads, this benchmark and other processes', () => {
    // 10 s: machine busy 15 core-s; containers 12 core-s of which ours 10 (gateway 6, core 4);
    // engine 0.5 core-s, kernel threads 0.3, this benchmark 0.2, so 2 core-s of other processes.
    const w = window({ busyTicks: 1500, parentS: 12, ours: { gateway: 6, core: 4 }, engineTicks: 50, kernelTicks: 30, benchS: 0.2, otherTicks: { make: 150, sh: 10 } });
    assert.equal(w.seconds, 10);
    assert.deepEqual(w.ours, { gateway: 0.6, core: 0.4 });
    assert.ok(Math.abs(w.otherContainers - 0.2) < 1e-9, `other containers ${w.otherContainers}`);
    assert.ok(Math.abs(w.engine - 0.05) < 1e-9);
    assert.ok(Math.abs(w.kernel - 0.03) < 1e-9);
    assert.ok(Math.abs(w.bench - 0.02) < 1e-9);
    assert.ok(Math.abs(w.otherHost - 0.2) < 1e-9, `other host ${w.otherHost}`);
    assert.ok(Math.abs(w.other - 0.4) < 1e-9);
    assert.deepEqual(w.topOtherHost.map((p) => p.comm), ['make', 'sh']);
  });

  it('counts steal as a fraction of the machine time', () => {
    const w = window({ busyTicks: 1000, stealTicks: 200, parentS: 10, ours: { core: 10 } });
    assert.ok(Math.abs(w.stealFraction - 0.1) < 1e-9);
  });

  it('profiles each container by process name, summing processes of one name, leaving out one seen at only one edge or reused for another', () => {
    const at = (entries: [number, string, string, number][]): Inside => new Map(entries.map(([pid, container, comm, ticks]) => [pid, { container, comm, ticks }]));
    const before = at([
      [200, 'gateway', 'nginx', 100],
      [201, 'gateway', 'nginx', 50],
      [202, 'gateway', 'node', 1000],
      [300, 'broker', 'node', 0],
      [301, 'broker', 'sh', 5],
    ]);
    const after = at([
      [200, 'gateway', 'nginx', 300],
      [201, 'gateway', 'nginx', 150],
      [202, 'gateway', 'node', 1500],
      [300, 'broker', 'node', 400],
      // pid 301 ended and its number went to another program: its ticks are not sh's.
      [301, 'broker', 'redis-server', 90],
      // started inside the window: its share of the window is unknown.
      [302, 'broker', 'redis-check', 40],
    ]);
    const w = window({ busyTicks: 1400, parentS: 14, ours: { gateway: 8, broker: 4 }, inside: [before, after] });
    const rounded = Object.fromEntries(Object.entries(w.oursByProcess).map(([c, of]) => [c, Object.fromEntries(Object.entries(of).map(([n, x]) => [n, Math.round(x * 1e9) / 1e9]))]));
    assert.deepEqual(rounded, { gateway: { nginx: 0.3, node: 0.5 }, broker: { node: 0.4 } });
  });

  it('leaves out a process seen at only one edge from the breakdown, not from the total', () => {
    const w = window({ busyTicks: 1200, parentS: 10, ours: { core: 10 } });
    assert.ok(Math.abs(w.otherHost - 0.2) < 1e-9, 'the 2 core-s nobody accounts for are other host work');
    assert.deepEqual(w.topOtherHost, []);
  });
});

describe('bench host: the busy-host check', () => {
  it('accepts a window whose other work and steal are within the limits', () => {
    const quiet = window({ busyTicks: 1010, parentS: 10, ours: { core: 10 }, engineTicks: 10 });
    assert.deepEqual(busyReasons(quiet, limits), []);
    assert.deepEqual(hostOnlyBusyReasons(quiet, limits), []);
  });

  it('refuses a window where other containers used more than the limit, naming the figure and the limit', () => {
    const w = window({ busyTicks: 1200, parentS: 12, ours: { core: 10 } });
    const reasons = busyReasons(w, limits);
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /^other work 0\.2 cores > 0\.15 \(other containers 0\.2, other host processes 0\)$/);
  });

  it('refuses a window where host processes outside every container used more than the limit, naming the busiest', () => {
    const w = window({ busyTicks: 1300, parentS: 10, ours: { core: 10 }, otherTicks: { 'go build': 250 } });
    assert.match(busyReasons(w, limits).join(), /other host processes 0\.3: go build 0\.25/);
    assert.match(hostOnlyBusyReasons(w, limits).join(), /^other host processes 0\.3 cores > 0\.15: go build 0\.25$/);
  });

  it('refuses a window with more steal than the limit', () => {
    const w = window({ busyTicks: 1000, stealTicks: 120, parentS: 10, ours: { core: 10 } });
    assert.deepEqual(busyReasons(w, limits), ['steal 6 % > 5 %']);
    assert.deepEqual(hostOnlyBusyReasons(w, limits), ['steal 6 % > 5 %']);
  });

  it('does not count the engine, kernel threads or this benchmark as other work', () => {
    const w = window({ busyTicks: 1500, parentS: 10, ours: { core: 10 }, engineTicks: 300, kernelTicks: 100, benchS: 1 });
    assert.deepEqual(busyReasons(w, limits), []);
  });

  it('counts the Docker engine as other work when nothing of the benchmark ran in the window', () => {
    const w = window({ busyTicks: 200, parentS: 0, ours: {}, engineTicks: 200 });
    assert.deepEqual(busyReasons(w, limits), [], 'while the benchmark runs, the engine works for it');
    assert.deepEqual(busyReasons(w, limits, { engineIsOther: true }), ['other work 0.2 cores > 0.15 (other containers 0, other host processes 0, Docker engine 0.2)']);
  });

  it('leaves other containers to the per-window check in sections whose own containers come and go', () => {
    const w = window({ busyTicks: 1500, parentS: 15, ours: {} });
    assert.equal(hostOnlyBusyReasons(w, limits).length, 0);
    assert.equal(busyReasons(w, limits).length, 1);
  });
});

describe('bench host: reading /proc and cgroup files', () => {
  it('reads the aggregate cpu line of /proc/stat', () => {
    const text = 'cpu  1346352 0 435929 2281678 39683 0 40317 15255 0 0\ncpu0 654105 0 196848 1195331 8753 0 17441 7614 0 0\nintr 1\n';
    assert.deepEqual(parseProcStat(text), { user: 1346352, nice: 0, system: 435929, idle: 2281678, iowait: 39683, irq: 0, softirq: 40317, steal: 15255 });
    assert.throws(() => parseProcStat('cpu0 1 2 3\n'));
  });

  it("reads a process stat line whose name holds spaces and parentheses, counting its own time and not its reaped children's, and tells kernel threads apart", () => {
    const user = '4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7000 3000 20 0 1 0 100 0 0';
    assert.deepEqual(parsePidStat(user), { comm: 'a (weird) name', kernel: false, ticks: 300 });
    const kthread = '22 (ksoftirqd/1) S 2 0 0 0 -1 69238848 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0';
    assert.equal(parsePidStat(kthread).kernel, true);
  });

  it('finds the cpuacct (v1) and unified (v2) hierarchies in mountinfo', () => {
    const text = [
      '30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755',
      '33 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpuacct',
      '34 30 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:14 - cgroup cgroup rw,cpu',
    ].join('\n');
    assert.deepEqual(parseMountinfo(text), { cpuacct: '/sys/fs/cgroup/cpuacct' });
    assert.deepEqual(parseMountinfo('29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate'), { unified: '/sys/fs/cgroup' });
    assert.deepEqual(parseMountinfo('36 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct'), { cpuacct: '/sys/fs/cgroup/cpu,cpuacct' });
  });

  it("reads a process's cgroup paths and a v2 cpu.stat", () => {
    assert.deepEqual(parseProcCgroup('4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n0::/\n'), { cpuacct: '/docker/abc', unified: '/' });
    assert.deepEqual(parseProcCgroup('0::/system.slice/docker-abc.scope\n'), { unified: '/system.slice/docker-abc.scope' });
    assert.equal(parseCpuStatNs('usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n'), 1_234_567_000);
    assert.throws(() => parseCpuStatNs('user_usec 1\n'));
  });
});
