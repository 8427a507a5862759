import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../stack/build';

export interface CommandOutcome {
  /** The exit status; -1 when the command could not run or was killed (timeout, signal). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, with `input` on its stdin; a non-zero exit is a result, not an exception. */
export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; stderrTo?: NodeJS.WritableStream } = {}): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
      opts.stderrTo?.write(c);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** A command that must succeed; its stdout. */
async function must(what: string, p: Promise<CommandOutcome>): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-3000)}`);
  return r.stdout;
}

const CLUSTER_SCRIPT = join(REPO_ROOT, 'scripts', 'k8s-cluster.sh');

/**
 * The real single-node Kubernetes of scripts/k8s-cluster.sh, as its `start` reported it:
 * its admin kubeconfig, node, node address (on an empty bridge of this machine), its own
 * containerd, and the Helm it was built with.
 */
export class K8sCluster {
  private constructor(
    readonly kubeconfig: string,
    readonly nodeName: string,
    readonly nodeIp: string,
    readonly containerdAddress: string,
    readonly helmBinary: string,
    /** The bridge pods are attached to: where their packets to the node arrive. */
    readonly podBridge: string,
    /** What enforces NetworkPolicy (kube-router's firewall). */
    readonly networkPolicy: string,
  ) {}

  static async start(): Promise<K8sCluster> {
    const out = await must('scripts/k8s-cluster.sh start', run('bash', [CLUSTER_SCRIPT, 'start'], { timeoutMs: 3_600_000, stderrTo: process.stderr }));
    const vars = new Map(out.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
    const get = (k: string): string => {
      const v = vars.get(k);
      if (!v) throw new Error(`scripts/k8s-cluster.sh start did not report ${k} (stdout: ${out.trim()})`);
      return v;
    };
    return new K8sCluster(get('KUBECONFIG'), get('NODE_NAME'), get('NODE_IP'), get('CONTAINERD_ADDRESS'), get('HELM'), get('POD_BRIDGE'), get('NETWORK_POLICY'));
  }

  static async stop(): Promise<void> {
    await must('scripts/k8s-cluster.sh stop', run('bash', [CLUSTER_SCRIPT, 'stop'], { timeoutMs: 300_000, stderrTo: process.stderr }));
  }

  kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CommandOutcome> {
    return run('kubectl', ['--kubeconfig', this.kubeconfig, ...args], opts);
  }

  /** kubectl that must succeed; its stdout. */
  k(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return must(`kubectl ${args.join(' ')}`, this.kubectl(args, opts));
  }

  /** `kubectl ... -o json`, parsed. */
  async json<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.k([...args, '-o', 'json'])) as T;
  }

  helm(args: string[], opts: { timeoutMs?: number } = {}): Promise<CommandOutcome> {
    return run(this.helmBinary, ['--kubeconfig', this.kubeconfig, ...args], { timeoutMs: opts.timeoutMs ?? 600_000 });
  }

  private ctr(args: string[]): Promise<string> {
    return must(`ctr ${args.join(' ')}`, run('ctr', ['--address', this.containerdAddress, '-n', 'k8s.io', ...args]));
  }

  /**
   * Copies a Docker image into the cluster's containerd (`docker save | ctr images import`):
   * there is no registry to pull from. It is then known as docker.io/<name>, which is what
   * the kubelet resolves `<name>` to.
   */
  importImage(ref: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const save = spawn('/usr/bin/docker', ['save', ref], { stdio: ['ignore', 'pipe', 'pipe'] });
      const load = spawn('ctr', ['--address', this.containerdAddress, '-n', 'k8s.io', 'images', 'import', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let errors = '';
      save.stderr.on('data', (c: Buffer) => (errors += c.toString()));
      load.stderr.on('data', (c: Buffer) => (errors += c.toString()));
      load.stdout.resume();
      save.stdout.pipe(load.stdin);
      let pending = 2;
      let failed = false;
      const done = (what: string) => (code: number | null): void => {
        if (code !== 0 && !failed) {
          failed = true;
          reject(new Error(`importing ${ref}: ${what} exited ${code}: ${errors.trim()}`));
        }
        if (--pending === 0 && !failed) resolve();
      };
      save.on('close', done('docker save'));
      load.on('close', done('ctr images import'));
    });
  }

  /** Another name for an image already in the cluster's containerd (a "new tag" without a build). */
  async tagImage(from: string, to: string): Promise<void> {
    await this.ctr(['images', 'tag', '--force', `docker.io/${from}`, `docker.io/${to}`]);
  }

  async imageNames(): Promise<string[]> {
    return (await this.ctr(['images', 'ls', '-q'])).split('\n').filter((l) => l !== '');
  }
}

let shared: Promise<K8sCluster> | undefined;

/**
 * The cluster, started once per test process on first use and stopped after the last test
 * (a root `after` hook, registered when a test file imports this module). Starting also
 * builds the binaries once per machine (scripts/lib/k8s.sh; about 23 minutes cold).
 */
export function sharedCluster(): Promise<K8sCluster> {
  shared ??= K8sCluster.start().catch(async (err: unknown) => {
    // A start that failed half way still changed the host: undo it.
    await K8sCluster.stop().catch(() => undefined);
    throw err;
  });
  return shared;
}

declare const after: ((name: string, fn: () => Promise<void>) => void) | undefined;
if (typeof after === 'function') {
  after('stop the test Kubernetes cluster', async function (this: { timeout?: (ms: number) => void }) {
    this.timeout?.(300_000);
    if (!shared) return;
    const started = shared;
    shared = undefined;
    await started.catch(() => undefined);
    await K8sCluster.stop();
  });
}
