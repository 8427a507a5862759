/**
 * Fixtures for the SSH tunnel tests: key files OpenSSH accepts, child processes that are
 * always reaped (ssh, sshd, redis-server), a GatewaySshServer on a free loopback port,
 * a throwaway redis-server to sit behind a tunnel, and RESP / banner probes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry, type Counter } from 'prom-client';
import type { Logger } from '../../services/common/log/logger';
import { fingerprintOfKey, generateSshKeyPair, type SshKeyPair } from '../../services/common/pki/ssh-keys';
import { gatewayMetrics, type GatewayMetrics } from '../../services/gateway/metrics';
import { parseAuthorizedKeys } from '../../services/gateway/ssh/authorized-keys';
import { FailureLimiter } from '../../services/gateway/ssh/failure-limiter';
import { GatewaySshServer } from '../../services/gateway/ssh/server';
import type { Tunnel } from '../../services/gateway/tunnel/tunnel';
import { requireBinary } from './binaries';
import { silentLogger } from './logger';
import { freePort } from './ports';
import { waitFor } from './wait';

// ---------------------------------------------------------------------------------------
// Keys

export interface KeyFiles extends SshKeyPair {
  comment: string;
  privatePath: string;
  publicPath: string;
  fingerprint: string;
}

/** An ed25519 key pair written as `<dir>/<name>` (0600, as OpenSSH insists) and `<name>.pub`. */
export function writeKeyPair(dir: string, name: string, comment = name): KeyFiles {
  const pair = generateSshKeyPair(comment);
  const privatePath = join(dir, name);
  const publicPath = `${privatePath}.pub`;
  writeFileSync(privatePath, pair.privateKey, { mode: 0o600 });
  writeFileSync(publicPath, `${pair.publicKey}\n`, { mode: 0o644 });
  return { ...pair, comment, privatePath, publicPath, fingerprint: fingerprintOfKey(pair.publicKey) };
}

/** The base64 lines of a PEM-like private key: none of them may ever show up in a log. */
export function secretChunks(privateKey: string): string[] {
  return privateKey
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('-----'));
}

// ---------------------------------------------------------------------------------------
// Child processes

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProcOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  stdin?: string;
  tree?: boolean;
}

/** A child process whose stdout and stderr are collected together. */
export class Proc {
  readonly child: ChildProcess;
  output = '';
  exitInfo: Exit | undefined;
  readonly exited: Promise<Exit>;

  /** Whether stop() also signals the process's descendants (sshd's per-connection processes). */
  private readonly tree: boolean;

  constructor(cmd: string, args: readonly string[], opts: ProcOptions = {}) {
    this.tree = opts.tree ?? false;
    this.child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (b: Buffer) => (this.output += b.toString('utf8')));
    this.child.stderr?.on('data', (b: Buffer) => (this.output += b.toString('utf8')));
    this.child.stdin?.on('error', () => undefined);
    if (opts.stdin !== undefined) this.child.stdin?.end(opts.stdin);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.output += `spawn error: ${err.message}\n`;
      });
      this.child.on('close', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The exit, or a test failure naming the command's output if it does not come. */
  async waitExit(timeoutMs = 10_000): Promise<Exit> {
    const timer = sleep(timeoutMs, undefined, { ref: false }).then(() => undefined);
    const result = await Promise.race([this.exited, timer]);
    if (!result) throw new Error(`process ${this.pid} did not exit within ${timeoutMs} ms; output:\n${this.output}`);
    return result;
  }

  async waitOutput(pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    await waitFor(`output matching ${pattern} (got: ${JSON.stringify(this.output)})`, () => pattern.test(this.output), timeoutMs, 25);
  }

  /** SIGTERM, then SIGKILL if it lingers; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (!this.running) return;
    if (this.tree) {
      for (const pid of descendantsOf(this.pid)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    }
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited, sleep(3000, undefined, { ref: false }).then(() => undefined)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Every process a test starts, so an after hook can stop them all. */
export class Procs {
  private readonly all: Proc[] = [];

  start(cmd: string, args: readonly string[], opts?: ProcOptions): Proc {
    const p = new Proc(cmd, args, opts);
    this.all.push(p);
    return p;
  }

  async stopAll(): Promise<void> {
    const procs = this.all.splice(0);
    await Promise.all(procs.map((p) => p.stop()));
  }
}

/** Pids of every live descendant of `pid` (children first found, deepest last), from /proc. */
export function descendantsOf(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(name), Number(rest[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Probes

/** Sends one Redis command (RESP array) and resolves with the first reply line, e.g. "+PONG". */
export function redisCommand(port: number, args: readonly string[] = ['PING'], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply from 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(got.slice(0, got.indexOf('\r\n')));
    };
    socket.on('connect', () => socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    socket.on('data', (b: Buffer) => {
      got += b.toString('utf8');
      if (got.includes('\r\n')) finish();
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`127.0.0.1:${port} closed the connection without a reply`)));
  });
}

/**
 * Connects and reads what the server says first: resolves on its first full line (an SSH
 * banner), when it closes, or when `waitMs` passes, whichever comes first.
 */
export function probeBanner(port: number, waitMs = 2000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ data, closed });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (b: Buffer) => {
      data += b.toString('latin1');
      if (data.includes('\n')) done(false);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => done(true));
  });
}

/**
 * Asks a SOCKS5 proxy (what `ssh -D` runs) to CONNECT to 127.0.0.1:`destPort`: resolves
 * with the proxy's reply code (0 = connected) or 'closed' if it hangs up without one.
 */
export function socks5Connect(port: number, destPort: number, timeoutMs = 5000): Promise<number | 'closed'> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    let greeted = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no SOCKS reply from 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (result: number | 'closed'): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    socket.on('connect', () => socket.write(Buffer.from([5, 1, 0])));
    socket.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      if (!greeted && got.length >= 2) {
        if (got[0] !== 5 || got[1] !== 0) return done(got[1] ?? 'closed');
        greeted = true;
        got = got.subarray(2);
        socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, destPort >> 8, destPort & 0xff]));
      }
      if (greeted && got.length >= 2) done(got[1]!);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => done('closed'));
  });
}

// ---------------------------------------------------------------------------------------
// redis-server

export interface RedisFixture {
  port: number;
  proc: Proc;
}

/** A throwaway redis-server on loopback: no persistence, answering PING before this resolves. */
export async function startRedis(procs: Procs, dir: string): Promise<RedisFixture> {
  const bin = requireBinary('redis-server', '/usr/bin/redis-server');
  const port = await freePort();
  const proc = procs.start(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { cwd: dir });
  await waitFor(`redis-server on ${port} (output: ${proc.output})`, async () => (await redisCommand(port, ['PING'], 1000)) === '+PONG', 10_000, 50);
  return { port, proc };
}

// ---------------------------------------------------------------------------------------
// The gateway's SSH server

export interface GatewayFixture {
  server: GatewaySshServer;
  port: number;
  hostKey: KeyFiles;
  registry: Registry;
  metrics: GatewayMetrics;
  limiter: FailureLimiter;
  /** Every tunnel the server has announced, in order. */
  tunnels: Tunnel[];
  /** Replace to change admission for the next TCP connections. */
  admit: (address: string) => boolean;
  close: () => Promise<void>;
}

export interface GatewayFixtureOptions {
  hostKey: KeyFiles;
  /** authorized_keys text. */
  authorizedKeys: string;
  queuePort: number;
  /** Listen on this port instead of a free one (a restart on the same port). */
  port?: number;
  log?: Logger;
  setupTimeoutMs?: number;
  maxFailures?: number;
  admit?: (address: string) => boolean;
  maxConnections?: number;
  maxStartups?: number;
  maxStartupsPerSource?: number;
}

export async function startGateway(o: GatewayFixtureOptions): Promise<GatewayFixture> {
  const registry = new Registry();
  const metrics = gatewayMetrics(registry);
  const limiter = new FailureLimiter({ maxFailures: o.maxFailures ?? 3, windowMs: 60_000, maxTracked: 100 });
  const tunnels: Tunnel[] = [];
  const fixture: GatewayFixture = {
    server: undefined as unknown as GatewaySshServer,
    port: 0,
    hostKey: o.hostKey,
    registry,
    metrics,
    limiter,
    tunnels,
    admit: o.admit ?? (() => true),
    close: async () => {
      await fixture.server.close();
      for (const t of tunnels) t.close();
    },
  };
  const server = new GatewaySshServer(
    {
      hostKey: o.hostKey.privateKey,
      authorizedKeys: parseAuthorizedKeys(o.authorizedKeys),
      queuePort: o.queuePort,
      admit: (a) => fixture.admit(a),
      limiter,
      keepaliveIntervalMs: 2000,
      keepaliveCountMax: 3,
      setupTimeoutMs: o.setupTimeoutMs ?? 8000,
      maxConnections: o.maxConnections ?? 32,
      maxStartups: o.maxStartups ?? 16,
      maxStartupsPerSource: o.maxStartupsPerSource ?? 4,
    },
    metrics,
    o.log ?? silentLogger(),
  );
  server.on('tunnel', (t) => tunnels.push(t));
  fixture.server = server;
  await server.listen(o.port ?? 0, '127.0.0.1');
  fixture.port = server.port;
  return fixture;
}

/** A counter's value for one label set (0 when never incremented). */
export async function counterValue<T extends string>(counter: Counter<T>, labels: Partial<Record<T, string>> = {}): Promise<number> {
  const { values } = await counter.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

// ---------------------------------------------------------------------------------------
// The OpenSSH client

/** Options that make `ssh` non-interactive, independent of any config, agent or known_hosts. */
export function sshOptions(key: KeyFiles, port: number): string[] {
  return [
    '-F', '/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', 'ControlMaster=no',
    '-o', 'ConnectTimeout=5',
    '-i', key.privatePath,
    '-p', String(port),
    '-l', 'broker',
  ];
}

/** Starts `ssh <options> <extra...>`; the host (127.0.0.1) is the caller's to place in `extra`. */
export function startSsh(procs: Procs, key: KeyFiles, port: number, extra: readonly string[], env?: NodeJS.ProcessEnv): Proc {
  const bin = requireBinary('openssh-client', '/usr/bin/ssh');
  return procs.start(bin, [...sshOptions(key, port), ...extra], { env: env ?? { PATH: process.env.PATH, HOME: process.env.HOME } });
}

// ---------------------------------------------------------------------------------------
// OpenSSH's sshd

export interface SshdOptions {
  dir: string;
  port: number;
  hostKey: KeyFiles;
  /** authorized_keys text for the login user. */
  authorizedKeys: string;
  /** The one listen address remote forwards may bind (PermitListen). */
  permitListen: string;
}

/**
 * Runs `/usr/sbin/sshd -D -e` on 127.0.0.1 with a config written into `dir`, as root,
 * allowing public-key logins and remote forwards of `permitListen` only. Resolves once
 * sshd greets with its banner. The returned Proc's stop() also ends sshd's per-connection
 * processes, which sshd detaches into sessions of their own.
 */
export async function startSshd(procs: Procs, o: SshdOptions): Promise<Proc> {
  const bin = requireBinary('openssh-server', '/usr/sbin/sshd');
  // sshd (running as root) refuses to start without its privilege separation directory,
  // which Debian's service unit would normally create.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const authorizedKeysFile = join(o.dir, 'authorized_keys');
  writeFileSync(authorizedKeysFile, `${o.authorizedKeys.trim()}\n`, { mode: 0o600 });
  const config = join(o.dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${o.port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${o.hostKey.privatePath}`,
      `PidFile ${join(o.dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeysFile}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding remote',
      `PermitListen ${o.permitListen}`,
      'AllowAgentForwarding no',
      'X11Forwarding no',
      'PermitTTY no',
      'StrictModes no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const proc = procs.start(bin, ['-D', '-e', '-f', config], { tree: true });
  await waitFor(
    `sshd on ${o.port} to greet (output: ${proc.output})`,
    async () => {
      if (!proc.running) throw new Error(`sshd exited: ${proc.output}`);
      return (await probeBanner(o.port, 1000)).data.startsWith('SSH-2.0-OpenSSH');
    },
    10_000,
    50,
  );
  return proc;
}
