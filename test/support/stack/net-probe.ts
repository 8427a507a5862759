import type Docker from 'dockerode';
import { execIn, type ExecResult } from './stack';

/**
 * Reachability probes that say why a connection did not happen. A bare "nc exited
 * non-zero" reads the same when the port is closed and when nc is not in the image (exit
 * 127), so a "blocked" check built on it cannot fail. These probes run Node.js inside the
 * container (every image here has it), classify the socket's own error code, and throw
 * when the probe did not run or ended any other way. Callers still pair each negative
 * with a positive control from the same container: the same probe reaching something
 * that is open.
 */

export type TcpOutcome = 'connected' | 'refused' | 'timeout' | 'unreachable';
export type NameOutcome = 'resolved' | 'not-found';

/** Runs a command where the probe should run from (a container, a namespace). */
export type Runner = (cmd: string[]) => Promise<ExecResult>;

/** The probe did not run, or ended in a way that says nothing about reachability. */
export class ProbeError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'ProbeError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Runs probes inside a container as its default user. */
export function inContainer(docker: Docker, container: Docker.Container): Runner {
  return (cmd) => execIn(docker, container, cmd, { timeoutMs: 60_000 });
}

// Exit 0 with one JSON line for every classified outcome; exit 3 for anything else, so
// that an unknown socket error cannot be read as "blocked".
const TCP_SCRIPT = `
const net = require('net');
const [host, port, ms] = process.argv.slice(1);
const classes = { ECONNREFUSED: 'refused', ETIMEDOUT: 'timeout', EHOSTUNREACH: 'unreachable', ENETUNREACH: 'unreachable' };
const s = net.connect({ host, port: Number(port) });
const done = (outcome, code) => { process.stdout.write(JSON.stringify({ outcome, code })); s.destroy(); process.exit(0); };
setTimeout(() => done('timeout', 'no answer within ' + ms + ' ms'), Number(ms));
s.on('connect', () => done('connected', null));
s.on('error', (e) => {
  if (classes[e.code]) done(classes[e.code], e.code);
  process.stderr.write('unclassified socket error ' + e.code + ': ' + e.message);
  process.exit(3);
});
`;

const NAME_SCRIPT = `
const dns = require('dns');
dns.lookup(process.argv[1], { family: 4 }, (e, address) => {
  if (!e) { process.stdout.write(JSON.stringify({ outcome: 'resolved', address })); process.exit(0); }
  if (e.code === 'ENOTFOUND') { process.stdout.write(JSON.stringify({ outcome: 'not-found', code: e.code })); process.exit(0); }
  process.stderr.write('lookup failed with ' + e.code + ': ' + e.message);
  process.exit(3);
});
`;

function parseOutcome<T extends string>(what: string, res: ExecResult, allowed: readonly T[]): { outcome: T; address?: string } {
  if (res.exitCode !== 0) throw new ProbeError(`${what}: the probe exited ${res.exitCode}: ${res.stderr.trim() || res.stdout.trim()}`, res.exitCode, res.stderr);
  let parsed: { outcome?: unknown; address?: unknown };
  try {
    parsed = JSON.parse(res.stdout) as typeof parsed;
  } catch {
    throw new ProbeError(`${what}: the probe printed ${JSON.stringify(res.stdout.slice(0, 200))}`, res.exitCode, res.stderr);
  }
  if (!allowed.includes(parsed.outcome as T)) throw new ProbeError(`${what}: unknown outcome ${JSON.stringify(parsed.outcome)}`, res.exitCode, res.stderr);
  return { outcome: parsed.outcome as T, ...(typeof parsed.address === 'string' ? { address: parsed.address } : {}) };
}

/**
 * Opens one TCP connection to host:port from where `run` runs and tells how it ended:
 * connected, refused (RST: the host answered, nothing listens), timeout (no answer:
 * dropped on the way or at the host), unreachable (ICMP or no route). Throws ProbeError
 * when the probe could not run or failed otherwise.
 */
export async function tcpProbe(run: Runner, host: string, port: number, timeoutMs = 3000): Promise<TcpOutcome> {
  const res = await run(['node', '-e', TCP_SCRIPT, host, String(port), String(timeoutMs)]);
  return parseOutcome(`tcp ${host}:${port}`, res, ['connected', 'refused', 'timeout', 'unreachable'] as const).outcome;
}

/**
 * Starts a TCP listener on 0.0.0.0:port inside a container (it lives as long as the
 * container): an open port for a positive control where no service of the stack should
 * be reachable. Returns once the listener accepts a connection from inside the container.
 */
export async function startListener(docker: Docker, container: Docker.Container, port: number): Promise<void> {
  const exec = await container.exec({
    Cmd: ['node', '-e', `require('net').createServer((s) => { s.on('error', () => {}); s.end(); }).listen(${port}, '0.0.0.0')`],
    AttachStdout: false,
    AttachStderr: false,
  });
  await exec.start({ Detach: true });
  const local = inContainer(docker, container);
  for (let i = 0; i < 50; i++) {
    if ((await tcpProbe(local, '127.0.0.1', port)) === 'connected') return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the listener on port ${port} did not come up`);
}

/**
 * Resolves a name from where `run` runs (the resolver the container's own programs use).
 * 'not-found' only for a definite "no such name"; a resolver that did not answer throws.
 */
export async function lookupName(run: Runner, name: string): Promise<{ outcome: NameOutcome; address?: string }> {
  const res = await run(['node', '-e', NAME_SCRIPT, name]);
  return parseOutcome(`lookup ${name}`, res, ['resolved', 'not-found'] as const);
}
