import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { FlakeyDisk } from '../../support/flakey-disk';
import type { Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';
import type { Fault, History } from './history';

const run = promisify(execFile);

/** The nemesis could not apply a fault, or the fault did not take effect: the run proves nothing. */
export class NemesisError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NemesisError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Where the broker with the movable clock finds libfaketime's offset file (see clockAdjust). */
export interface ClockControl {
  /** Host file the broker's libfaketime reads (FAKETIME_TIMESTAMP_FILE), e.g. "+60s". */
  offsetFile: string;
  service: string;
}

/**
 * The faults, each applied and healed from the host the way an operator or an accident
 * would: a container's processes killed by pid (so Docker's restart policy acts, as on a
 * crash), `docker stop` with the default grace, redis-server killed by its host pid, a
 * blackhole as nftables rules inside a broker's network namespace, a clock offset through
 * libfaketime's offset file, a core pause, and a power cut under core's database. Each
 * records a Fault in the History (start, heal, what it checked) and calls `onWhole` at each
 * moment the chain should serve again (a heal; a broker gone while another serves), where
 * the test starts a liveness probe.
 */
export class Nemesis {
  /** How many times the nemesis made each service's container die (kill, stop, power cut). */
  readonly deaths = new Map<string, number>();

  private died(service: string): void {
    this.deaths.set(service, (this.deaths.get(service) ?? 0) + 1);
  }

  constructor(
    private readonly stack: Stack,
    private readonly history: History,
    private readonly onWhole: (label: string, at: number) => void,
  ) {}

  private begin(name: string, scope: string): Fault {
    const f: Fault = { name, scope, start: Date.now(), notes: [], problems: [] };
    this.history.faults.push(f);
    return f;
  }

  private heal(f: Fault): void {
    f.healed = Date.now();
    this.onWhole(`${f.name} healed`, f.healed);
  }

  private async startedAt(service: string): Promise<string> {
    return (await this.stack.inspect(service)).State.StartedAt;
  }

  /** Waits for a container to run again after `before` (its StartedAt), then to be healthy. */
  private async waitRestarted(service: string, before: string, timeoutMs = 120_000): Promise<void> {
    await waitFor(`${service} to start again`, async () => {
      const s = (await this.stack.inspect(service)).State;
      return s.Running && s.StartedAt !== before;
    }, timeoutMs, 100);
    await this.stack.waitHealthy(service, timeoutMs);
  }

  /** Host pids of a container's processes whose command is `comm` (all when undefined). */
  private async pids(service: string, comm?: string): Promise<number[]> {
    const top = (await this.stack.container(service).top({ ps_args: '-o pid,comm' })) as { Processes?: string[][] };
    return (top.Processes ?? []).filter((p) => comm === undefined || p[1] === comm).map((p) => Number(p[0]));
  }

  /** SIGKILL of a whole container (its init, from the host): a crash, so the restart policy brings it back. */
  async killContainer(service: string, scope: string): Promise<void> {
    const f = this.begin(`${service} SIGKILL`, scope);
    const before = await this.stack.inspect(service);
    const pid = before.State.Pid;
    if (!before.State.Running || !pid) throw new NemesisError(`${service} is not running (state ${before.State.Status})`);
    process.kill(pid, 'SIGKILL');
    this.died(service);
    await this.waitRestarted(service, before.State.StartedAt);
    const after = await this.stack.inspect(service);
    f.notes.push(`pid ${pid} killed; restarted by the restart policy (count ${before.RestartCount} -> ${after.RestartCount})`);
    this.heal(f);
  }

  /**
   * `docker stop` with the default grace (SIGTERM, SIGKILL after the grace period), held
   * stopped for `holdMs`, then started. A stop that ends in Docker's kill (exit 137) or in
   * any exit but 0 is a problem: every service drains and exits 0 on SIGTERM.
   */
  async stopContainer(service: string, scope: string, holdMs: number, whileStopped?: (at: number) => void): Promise<void> {
    const f = this.begin(`${service} docker stop`, scope);
    const c = this.stack.container(service);
    // No timeout of our own: Docker's, i.e. the container's StopTimeout (compose's
    // stop_grace_period) or Docker's 10 s.
    await c.stop();
    this.died(service);
    const info = await this.stack.inspect(service);
    const s = info.State;
    const grace = (info.Config as { StopTimeout?: number }).StopTimeout;
    const tookMs = Date.parse(s.FinishedAt) - f.start;
    f.notes.push(`stopped (grace ${grace === undefined ? "Docker's default 10" : grace} s): exit ${s.ExitCode} after ${(tookMs / 1000).toFixed(1)} s`);
    if (s.Running) throw new NemesisError(`${service} still runs after docker stop`);
    if (s.ExitCode !== 0) f.problems.push(`exit ${s.ExitCode} after ${(tookMs / 1000).toFixed(1)} s on docker stop (${s.ExitCode === 137 ? 'killed at the end of the grace period, not drained' : 'not a clean drain'})`);
    whileStopped?.(Date.now());
    await sleep(holdMs);
    await c.start();
    await this.stack.waitHealthy(service, 120_000);
    this.heal(f);
  }

  /** SIGKILL of redis-server inside a broker, by its host pid; the broker restarts it in place. */
  async killRedis(service: string): Promise<void> {
    const f = this.begin(`${service} redis-server SIGKILL`, `broker:${service}`);
    const [pid, ...more] = await this.pids(service, 'redis-server');
    if (pid === undefined || more.length > 0) throw new NemesisError(`expected one redis-server in ${service}, found ${JSON.stringify([pid, ...more])}`);
    process.kill(pid, 'SIGKILL');
    const fresh = await waitFor(`a new redis-server in ${service}`, async () => {
      const now = await this.pids(service, 'redis-server');
      return now.length === 1 && now[0] !== pid ? now[0] : undefined;
    }, 30_000, 100);
    f.notes.push(`redis-server ${pid} killed; ${fresh} started in its place`);
    await this.stack.waitHealthy(service, 60_000);
    this.heal(f);
  }

  /**
   * Blackholes a broker's tunnel: inside its network namespace, every packet to and from
   * the gateway's SSH port is dropped (no RST, no ICMP: the peers only notice by silence).
   * The rules count what they dropped; nothing dropped means the fault did not happen.
   */
  async blackhole(service: string, holdMs: number, sshPort = 2222): Promise<void> {
    const f = this.begin(`${service} tunnel blackhole`, `broker:${service}`);
    const pid = (await this.stack.inspect(service)).State.Pid;
    const gw = await this.stack.ip('gateway', 'edge');
    const table = 'jepsen_blackhole';
    const rules = `table inet ${table} {
  chain out { type filter hook output priority -10; ip daddr ${gw} tcp dport ${sshPort} counter drop; }
  chain in { type filter hook input priority -10; ip saddr ${gw} tcp sport ${sshPort} counter drop; }
}
`;
    const nft = (args: string[], input?: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = execFile('nsenter', ['-t', String(pid), '-n', 'nft', ...args], (err, stdout, stderr) => (err ? reject(new NemesisError(`nsenter -t ${pid} -n nft ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
        // An nft that exits without reading its input (EPIPE here) fails with its own exit
        // status and message in the callback above; the pipe's error adds nothing to that.
        child.stdin?.on('error', () => undefined);
        if (input === undefined) child.stdin?.end();
        else child.stdin?.end(input);
      });
    await nft(['-f', '-'], rules);
    await sleep(holdMs);
    const listed = await nft(['list', 'table', 'inet', table]);
    await nft(['delete', 'table', 'inet', table]);
    const dropped = [...listed.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    f.notes.push(`${dropped} packets dropped between ${service} and ${gw}:${sshPort}`);
    if (dropped === 0) throw new NemesisError(`the blackhole on ${service} dropped no packet: the tunnel was not cut`);
    this.heal(f);
  }

  /**
   * Sets the broker's wall clock offset (libfaketime, real time only; its monotonic clock
   * runs on) and checks the broker's Node.js process reads the host's time plus it.
   */
  async setClock(clock: ClockControl, offsetS: number): Promise<number> {
    writeFileSync(clock.offsetFile, `${offsetS >= 0 ? '+' : ''}${offsetS}s\n`);
    // A running process re-reads the file once its cached copy is a second old
    // (FAKETIME_CACHE_DURATION=1); a fresh one (the check below) reads it at once. Without
    // this wait the broker's own process could still run on the old offset when the phase
    // goes on.
    await sleep(2500);
    return waitFor(`${clock.service}'s clock to read ${offsetS} s off`, async () => {
      const before = Date.now();
      const res = await this.stack.exec(clock.service, ['node', '-e', 'process.stdout.write(String(Date.now()))']);
      const seen = (Number(res.stdout) - (before + Date.now()) / 2) / 1000;
      return Math.abs(seen - offsetS) < 3 ? seen : undefined;
    }, 15_000, 500).catch((err: Error) => {
      throw new NemesisError(`the clock offset did not take: ${err.message}`);
    });
  }

  /** A broker's clock set off by `offsetS` for `holdMs` (or until `during` ends), then set right. */
  async clockOffset(clock: ClockControl, offsetS: number, during: () => Promise<void>): Promise<void> {
    const f = this.begin(`${clock.service} clock ${offsetS >= 0 ? '+' : ''}${offsetS} s`, `clock:${clock.service}`);
    const seen = await this.setClock(clock, offsetS);
    f.notes.push(`${clock.service}'s node read ${seen.toFixed(1)} s off the host's clock`);
    try {
      await during();
    } finally {
      await this.setClock(clock, 0);
    }
    this.heal(f);
  }

  /** Core frozen (docker pause) while `during` runs and at least `holdMs`. */
  async pauseCore(holdMs: number, during: () => Promise<unknown>): Promise<void> {
    const f = this.begin('core paused', 'chain');
    const c = this.stack.container('core');
    await c.pause();
    try {
      if ((await this.stack.inspect('core')).State.Status !== 'paused') throw new NemesisError('core is not paused after docker pause');
      await Promise.all([during(), sleep(holdMs)]);
    } finally {
      await c.unpause();
    }
    this.heal(f);
  }

  /**
   * A power cut under core, while it takes writes: core is frozen, the disk under its data
   * directory starts discarding writes, every process of core is SIGKILLed, then the disk
   * loses everything not synced (test/support/flakey-disk.ts), comes back, and core is
   * started on what survived. Frozen first so that nothing core acknowledges comes after
   * the cut. A file written just before the cut and never synced must be gone: proof the
   * cut loses what an engine did not sync.
   */
  async powerCutCore(disk: FlakeyDisk): Promise<void> {
    const f = this.begin('core power cut', 'chain');
    const c = this.stack.container('core');
    // Not restarted by Docker onto a disk that is being thrown away.
    await c.update({ RestartPolicy: { Name: 'no' } });
    const control = join(disk.dir, 'unsynced-control');
    writeFileSync(control, 'written before the cut, never synced');
    await c.pause();
    disk.dropWrites();
    const pids = await this.pids('core');
    if (pids.length === 0) throw new NemesisError('core has no processes to kill');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    this.died('core');
    await c.unpause();
    await waitFor('core to die', async () => !(await this.stack.inspect('core')).State.Running, 30_000, 100);
    const counts = await waitFor('the disk to power-cycle', () => disk.powerCycle(), 30_000, 500);
    const survived = existsSync(control) && readFileSync(control, 'utf8') === 'written before the cut, never synced';
    f.notes.push(`${pids.length} processes killed; the disk saw ${counts.writes} writes, dropped ${counts.dropped}, ${counts.flushes} flushes; the unsynced control file ${survived ? 'survived' : 'was lost'}`);
    if (survived) throw new NemesisError('a file never synced survived the power cut: the cut loses nothing, so it proves nothing');
    await c.update({ RestartPolicy: { Name: 'unless-stopped' } });
    await c.start();
    await this.stack.waitHealthy('core', 180_000);
    this.heal(f);
  }

  /** SIGKILL of core's processes: the restart policy brings it back on the same disk. */
  async killCore(): Promise<void> {
    await this.killContainer('core', 'chain');
  }
}

/**
 * Deaths no fault explains: each service's container `die` events against the deaths the
 * nemesis caused, and every `oom` event. Watched live from before the first fault: Docker
 * keeps only its last 256 events, and a run's health checks and execs push the early ones
 * out long before the end (a query afterwards missed deaths the nemesis had caused).
 * Docker's RestartCount cannot tell either: a manual start after a stop resets it.
 */
export class DeathWatch {
  private readonly seen = new Map<string, { die: number; oom: number; exits: string[] }>();
  private stream: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
  private buffered = '';

  private constructor(private readonly byId: Map<string, string>) {}

  static async start(stack: Stack, services: string[]): Promise<DeathWatch> {
    const watch = new DeathWatch(new Map(services.map((s) => [stack.container(s).id, s])));
    watch.stream = await stack.docker.getEvents({ filters: { type: ['container'], event: ['die', 'oom'] } });
    watch.stream.on('data', (chunk: Buffer) => watch.take(chunk.toString()));
    return watch;
  }

  private take(text: string): void {
    this.buffered += text;
    const lines = this.buffered.split('\n');
    this.buffered = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const e = JSON.parse(line) as { id?: string; Action?: string; Actor?: { Attributes?: Record<string, string> } };
      const service = e.id ? this.byId.get(e.id) : undefined;
      if (!service || (e.Action !== 'die' && e.Action !== 'oom')) continue;
      const entry = this.seen.get(service) ?? { die: 0, oom: 0, exits: [] };
      if (e.Action === 'die') {
        entry.die += 1;
        entry.exits.push(e.Actor?.Attributes?.exitCode ?? '?');
      } else entry.oom += 1;
      this.seen.set(service, entry);
    }
  }

  /** Stops watching; the problems: deaths other than those caused, and any OOM kill. */
  stop(caused: Map<string, number>): string[] {
    this.stream?.destroy?.();
    const out: string[] = [];
    for (const service of this.byId.values()) {
      const { die, oom, exits } = this.seen.get(service) ?? { die: 0, oom: 0, exits: [] };
      const expected = caused.get(service) ?? 0;
      if (die !== expected) out.push(`${service} died ${die} times (exit codes ${exits.join(', ') || 'none'}), the nemesis caused ${expected}`);
      if (oom > 0) out.push(`${service} ran out of memory ${oom} times`);
    }
    return out;
  }
}

/** nft and nsenter on the host, for the blackhole (a missing tool fails the run, never skips a fault). */
export async function requireHostTools(): Promise<void> {
  for (const [tool, args] of [['nsenter', ['--version']], ['nft', ['--version']]] as const) {
    await run(tool, [...args]).catch((err: Error) => {
      throw new NemesisError(`${tool} is needed on the host: ${err.message}`);
    });
  }
}
