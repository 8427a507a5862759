import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { runCommand, type CommandResult } from './run-command';
import { tempDir } from './tmp';
import { waitFor } from './wait';

/**
 * A second Docker engine with nothing in it, started the way scripts/check-fresh-bootstrap.sh
 * starts one: its own data root, exec root, socket and pid file, a bridge of its own (with
 * `--bridge none` dockerd would delete the machine's docker0), no iptables or masquerading
 * rules (it must not touch the machine's NAT), its own containerd namespaces. It stands in
 * for a fleet host that has never seen our images: whatever it runs, it had to pull.
 */
export class CleanEngine {
  private constructor(
    readonly dir: string,
    readonly socket: string,
    private readonly bridge: string,
    private readonly child: ChildProcess,
    private readonly cleanupDir: () => void,
  ) {}

  /** DOCKER_HOST for clients of this engine. */
  get host(): string {
    return `unix://${this.socket}`;
  }

  static async start(): Promise<CleanEngine> {
    const dockerd = requireBinary('docker.io', '/usr/sbin/dockerd', '/usr/bin/dockerd');
    const tmp = tempDir('nonstop-engine-');
    const id = randomBytes(4).toString('hex');
    const bridge = `nsrel${id}`;
    // A /24 in 10.231.0.0/16 that no interface on the machine uses yet.
    const used = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
    const third = [...Array(150).keys()].map((i) => 100 + i).find((n) => !used.includes(`10.231.${n}.`));
    if (third === undefined) throw new Error('no free 10.231.x.0/24 for the clean engine bridge');
    execFileSync('ip', ['link', 'add', bridge, 'type', 'bridge']);
    execFileSync('ip', ['addr', 'add', `10.231.${third}.1/24`, 'dev', bridge]);
    execFileSync('ip', ['link', 'set', bridge, 'up']);
    const socket = join(tmp.dir, 'docker.sock');
    const logFd = openSync(join(tmp.dir, 'dockerd.log'), 'a');
    const child = spawn(
      dockerd,
      [
        '-H', `unix://${socket}`,
        '--data-root', join(tmp.dir, 'data'),
        '--exec-root', join(tmp.dir, 'exec'),
        '--pidfile', join(tmp.dir, 'docker.pid'),
        '--bridge', bridge,
        '--iptables=false',
        '--ip-masq=false',
        '--containerd-namespace', `nonstop-clean-${id}`,
        '--containerd-plugins-namespace', `nonstop-clean-${id}-plugins`,
      ],
      { stdio: ['ignore', logFd, logFd] },
    );
    closeSync(logFd);
    child.on('error', () => undefined);
    const engine = new CleanEngine(tmp.dir, socket, bridge, child, tmp.cleanup);
    try {
      await waitFor(
        'the clean Docker engine to answer',
        async () => {
          if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}: ${engine.log().slice(-2000)}`);
          return (await engine.docker(['info', '--format', '{{.ServerVersion}}'])).code === 0;
        },
        60_000,
        500,
      );
    } catch (err) {
      await engine.stop();
      throw err;
    }
    return engine;
  }

  /** The Debian docker client against this engine. */
  docker(args: string[], timeoutMs?: number): Promise<CommandResult> {
    return runCommand('/usr/bin/docker', ['-H', this.host, ...args], timeoutMs === undefined ? {} : { timeoutMs });
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'dockerd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Stops dockerd (it unmounts its layers on the way out), then removes its bridge and files. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const exited = once(this.child, 'exit');
      const deadline = new Promise((resolve) => setTimeout(resolve, 60_000).unref());
      await Promise.race([exited, deadline]);
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGKILL');
        await exited;
      }
    }
    try {
      execFileSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
    } catch {
      // never created, or gone with a failed start
    }
    try {
      this.cleanupDir();
    } catch (err) {
      // A layer still mounted (dockerd killed) keeps its directory busy: say where it is.
      throw new Error(`could not remove ${this.dir}: ${(err as Error).message}`);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
