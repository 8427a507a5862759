import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { loadCompose, type ComposeSpec, type ServiceSpec } from './compose-config';
import type { ImageSet } from './build';

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const ORDER = ['keygen', 'core', 'gateway', 'broker'];

/**
 * The compose stack, run through the Docker API under its own project name: networks
 * `<project>_edge` and `<project>_private`, per-project volumes, containers named
 * `<project>_<service>`, ports published on random 127.0.0.1 ports. depends_on conditions
 * are honoured (completed successfully, healthy).
 */
export class Stack {
  readonly project: string;
  private readonly containers = new Map<string, Docker.Container>();
  private readonly extra: Docker.Container[] = [];

  private constructor(
    readonly docker: Docker,
    readonly spec: ComposeSpec,
    readonly images: ImageSet,
    project: string,
  ) {
    this.project = project;
  }

  /** `profiles`: compose profiles to run (`monitoring`: Prometheus); their images must be built. */
  static async up(docker: Docker, images: ImageSet, opts: { tag: string; env?: Record<string, string>; profiles?: string[]; adjust?: (spec: ComposeSpec) => void }): Promise<Stack> {
    const project = `nonstop-test-${randomBytes(3).toString('hex')}`;
    const spec = loadCompose({
      NONSTOP_TAG: opts.tag,
      NONSTOP_CORE_TARGET: images.coreTarget,
      NONSTOP_BIND: '127.0.0.1',
      NONSTOP_HTTP_PORT: '0',
      NONSTOP_HTTPS_PORT: '0',
      NONSTOP_SSH_PORT: '0',
      NONSTOP_PROMETHEUS_PORT: '0',
      ...opts.env,
    }, opts.profiles);
    opts.adjust?.(spec);
    const stack = new Stack(docker, spec, images, project);
    try {
      await stack.create();
    } catch (err) {
      const logs = await stack.allLogs().catch(() => '');
      await stack.down();
      throw new Error(`stack did not come up: ${(err as Error).message}\n${logs.slice(-6000)}`);
    }
    return stack;
  }

  name(service: string): string {
    return `${this.project}_${service}`;
  }

  private async create(): Promise<void> {
    for (const [net, { internal, ipv6Subnet }] of Object.entries(this.spec.networks)) {
      // Docker picks the IPv4 subnet as usual; an IPv6 one it needs to be given.
      const ipv6 = ipv6Subnet ? { EnableIPv6: true, IPAM: { Driver: 'default', Config: [{ Subnet: ipv6Subnet }] } } : {};
      await this.docker.createNetwork({ Name: this.name(net), Driver: 'bridge', Internal: internal, Labels: { 'nonstop.test': this.project }, ...ipv6 });
    }
    for (const vol of this.spec.volumes) await this.docker.createVolume({ Name: this.name(vol), Labels: { 'nonstop.test': this.project } });
    // Services a test's adjust hook added (a second broker) come after the ones compose.yaml has.
    for (const svc of [...ORDER, ...Object.keys(this.spec.services).filter((n) => !ORDER.includes(n))]) {
      const s = this.spec.services[svc];
      if (!s) throw new Error(`compose.yaml has no service ${svc}`);
      await this.waitForDependencies(s);
      await this.createService(s);
    }
    await this.waitHealthy('broker');
  }

  private async waitForDependencies(s: ServiceSpec): Promise<void> {
    for (const [dep, condition] of Object.entries(s.dependsOn)) {
      if (condition === 'service_completed_successfully') await this.waitExited(dep, 0);
      else if (condition === 'service_healthy') await this.waitHealthy(dep);
    }
  }

  private async createService(s: ServiceSpec): Promise<void> {
    const [first, ...rest] = s.networks;
    const hostConfig: Docker.HostConfig = {
      ReadonlyRootfs: s.readOnly,
      CapDrop: s.capDrop,
      CapAdd: s.capAdd,
      SecurityOpt: s.securityOpt,
      Tmpfs: s.tmpfs,
      Mounts: s.volumes.map((v) => ({ Type: v.bind ? ('bind' as const) : ('volume' as const), Source: v.bind ? v.source : this.name(v.source), Target: v.target, ReadOnly: v.readOnly })),
      Sysctls: s.sysctls,
      PortBindings: Object.fromEntries(s.ports.map((p) => [`${p.containerPort}/${p.protocol}`, [{ HostIp: p.hostIp, HostPort: p.hostPort === '0' ? '' : p.hostPort }]])),
      NetworkMode: s.networkMode ?? (first ? this.name(first) : 'none'),
      RestartPolicy: { Name: s.restart === 'unless-stopped' ? 'unless-stopped' : s.restart === 'always' ? 'always' : '' },
      ...(s.memoryBytes !== undefined ? { Memory: s.memoryBytes } : {}),
      ...(s.memorySwapBytes !== undefined ? { MemorySwap: s.memorySwapBytes } : {}),
      ...(s.pidsLimit !== undefined ? { PidsLimit: s.pidsLimit } : {}),
      ...(s.coreLimit !== undefined ? { Ulimits: [{ Name: 'core', Soft: s.coreLimit.soft, Hard: s.coreLimit.hard }] } : {}),
    };
    const container = await this.docker.createContainer({
      name: this.name(s.name),
      Image: s.image,
      ...(s.command ? { Cmd: s.command } : {}),
      Env: Object.entries(s.environment).map(([k, v]) => `${k}=${v}`),
      Labels: { 'nonstop.test': this.project, 'nonstop.service': s.name },
      ExposedPorts: Object.fromEntries(s.ports.map((p) => [`${p.containerPort}/${p.protocol}`, {}])),
      HostConfig: hostConfig,
      ...(s.stopGraceSeconds !== undefined ? { StopTimeout: s.stopGraceSeconds } : {}),
      ...(s.healthcheck ? { Healthcheck: { Test: s.healthcheck } } : {}),
      ...(first && !s.networkMode ? { NetworkingConfig: { EndpointsConfig: { [this.name(first)]: { Aliases: [s.name, ...(s.aliases[first] ?? [])] } } } } : {}),
    });
    for (const net of rest) await this.docker.getNetwork(this.name(net)).connect({ Container: container.id, EndpointConfig: { Aliases: [s.name, ...(s.aliases[net] ?? [])] } });
    this.containers.set(s.name, container);
    await container.start();
  }

  /**
   * Runs a one-shot service once more with `env` added to its environment, as an operator's
   * `docker compose run --rm -e K=V <service>` does (keygen setting a broker's BROKER_FROM),
   * and waits for it to exit 0; `command` replaces its command (`nonstop-keygen rotate
   * queue-password`). Its container goes with the stack.
   */
  async runAgain(service: string, env: Record<string, string>, command?: string[]): Promise<void> {
    const s = this.spec.services[service];
    if (!s) throw new Error(`compose.yaml has no service ${service}`);
    const name = `${service}-run-${randomBytes(2).toString('hex')}`;
    await this.createService({ ...s, name, environment: { ...s.environment, ...env }, ...(command ? { command } : {}) });
    await this.waitExited(name, 0);
  }

  /**
   * Recreates a service's container from `adjust(its spec)`, as an operator's `docker compose
   * up` after editing the service would: the old container is stopped (its grace period) and
   * removed, the new one takes its name and network aliases; a volume the new spec names
   * that the stack lacks is created (core on a fresh data volume). Waits until it is healthy.
   */
  async replace(service: string, adjust: (s: ServiceSpec) => ServiceSpec): Promise<void> {
    const s = this.spec.services[service];
    if (!s) throw new Error(`compose.yaml has no service ${service}`);
    const next = adjust(s);
    for (const v of next.volumes) {
      if (v.bind || this.spec.volumes.includes(v.source)) continue;
      await this.docker.createVolume({ Name: this.name(v.source), Labels: { 'nonstop.test': this.project } });
      this.spec.volumes.push(v.source);
    }
    const old = this.container(service);
    await old.stop({ t: s.stopGraceSeconds ?? 10 }).catch(() => undefined);
    await old.remove({ force: true });
    this.containers.delete(service);
    this.spec.services[service] = next;
    await this.createService(next);
    await this.waitHealthy(next.name);
  }

  container(service: string): Docker.Container {
    const c = this.containers.get(service);
    if (!c) throw new Error(`no container for ${service}`);
    return c;
  }

  async inspect(service: string): Promise<Docker.ContainerInspectInfo> {
    return this.container(service).inspect();
  }

  async waitExited(service: string, code: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const info = await this.inspect(service);
      if (!info.State.Running && info.State.Status === 'exited') {
        if (info.State.ExitCode !== code) throw new Error(`${service} exited ${info.State.ExitCode}: ${(await this.logs(service)).slice(-2000)}`);
        return;
      }
      await sleep(250);
    }
    throw new Error(`${service} did not exit within ${timeoutMs} ms`);
  }

  async waitHealthy(service: string, timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const info = await this.inspect(service);
      const health = info.State.Health?.Status;
      if (health === 'healthy') return;
      if (info.State.Status === 'exited' && info.HostConfig.RestartPolicy?.Name === '') throw new Error(`${service} exited: ${(await this.logs(service)).slice(-2000)}`);
      await sleep(250);
    }
    throw new Error(`${service} not healthy within ${timeoutMs} ms: ${(await this.logs(service)).slice(-3000)}`);
  }

  /** The container's address on one of the project's networks. */
  async ip(service: string, network: string): Promise<string> {
    return this.addressOf(this.container(service), network);
  }

  /** The address of any container on one of the project's networks (a probe's, say): IPv4, or the global IPv6 one. */
  async addressOf(c: Docker.Container, network = 'edge', family: 4 | 6 = 4): Promise<string> {
    const info = await c.inspect();
    const on = info.NetworkSettings.Networks[this.name(network)];
    const ip = family === 6 ? on?.GlobalIPv6Address : on?.IPAddress;
    if (!ip) throw new Error(`${info.Name} has no IPv${family} address on ${network}`);
    return ip;
  }

  /** The container's IPv6 address on one of the project's networks (one given an ipv6Subnet). */
  async ip6(service: string, network: string): Promise<string> {
    const info = await this.inspect(service);
    const ip = info.NetworkSettings.Networks[this.name(network)]?.GlobalIPv6Address;
    if (!ip) throw new Error(`${service} has no IPv6 address on ${network}`);
    return ip;
  }

  /** The random host port a container port was published on (127.0.0.1). */
  async hostPort(service: string, containerPort: number): Promise<number> {
    const info = await this.inspect(service);
    const binding = info.NetworkSettings.Ports[`${containerPort}/tcp`]?.[0];
    if (!binding) throw new Error(`${service}:${containerPort} is not published`);
    return Number(binding.HostPort);
  }

  async exec(service: string, cmd: string[], opts: { user?: string; timeoutMs?: number; input?: Buffer } = {}): Promise<ExecResult> {
    return execIn(this.docker, this.container(service), cmd, opts);
  }

  async logs(service: string): Promise<string> {
    const buf = await this.container(service).logs({ stdout: true, stderr: true, follow: false });
    return demux(buf);
  }

  async allLogs(): Promise<string> {
    const out: string[] = [];
    for (const name of this.containers.keys()) out.push(`--- ${name}\n${await this.logs(name).catch(() => '')}`);
    return out.join('\n');
  }

  /** A probe container (nmap, knock, curl, ssh, redis-cli) on one of the project's networks. */
  async probe(network = 'edge', opts: { volumes?: Record<string, string> } = {}): Promise<Docker.Container> {
    const c = await this.docker.createContainer({
      name: `${this.project}_probe_${randomBytes(2).toString('hex')}`,
      Image: this.images.probe,
      Labels: { 'nonstop.test': this.project },
      HostConfig: {
        NetworkMode: this.name(network),
        CapDrop: ['ALL'],
        CapAdd: ['NET_RAW', 'DAC_OVERRIDE'],
        Mounts: Object.entries(opts.volumes ?? {}).map(([vol, target]) => ({ Type: 'volume' as const, Source: this.name(vol), Target: target, ReadOnly: true })),
      },
    });
    await c.start();
    this.extra.push(c);
    return c;
  }

  async down(): Promise<void> {
    const all = await this.docker.listContainers({ all: true, filters: { label: [`nonstop.test=${this.project}`] } });
    for (const c of all) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    const nets = await this.docker.listNetworks({ filters: { label: [`nonstop.test=${this.project}`] } });
    for (const n of nets) await this.docker.getNetwork(n.Id).remove().catch(() => undefined);
    const vols = await this.docker.listVolumes({ filters: { label: [`nonstop.test=${this.project}`] } });
    for (const v of vols.Volumes ?? []) await this.docker.getVolume(v.Name).remove({ force: true }).catch(() => undefined);
  }
}

/** Runs a command in a container and collects its output and exit code. */
export async function execIn(docker: Docker, container: Docker.Container, cmd: string[], opts: { user?: string; timeoutMs?: number; input?: Buffer } = {}): Promise<ExecResult> {
  const withInput = opts.input !== undefined;
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, ...(withInput ? { AttachStdin: true } : {}), ...(opts.user ? { User: opts.user } : {}) });
  const stream = await exec.start({ hijack: true, stdin: withInput });
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (d: Buffer) => out.push(d));
  stderr.on('data', (d: Buffer) => err.push(d));
  docker.modem.demuxStream(stream, stdout, stderr);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exec ${cmd.join(' ')} timed out`)), opts.timeoutMs ?? 60_000);
    stream.on('end', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.on('error', reject);
  });
  // end() half-closes the connection: the process reads EOF on its stdin (docker exec -i ... < FILE).
  if (withInput) stream.end(opts.input);
  await done;
  const info = await exec.inspect();
  return { exitCode: info.ExitCode ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Docker's multiplexed log format (8-byte frame headers) to plain text. */
export function demux(buf: Buffer): string {
  const parts: string[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + size).toString('utf8'));
    i += 8 + size;
  }
  return parts.join('');
}
