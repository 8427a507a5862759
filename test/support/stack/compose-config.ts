import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { REPO_ROOT } from './build';

/**
 * compose.yaml as the compose implementation on this machine resolves it (anchors merged,
 * variables substituted), reduced to what the test stack needs. The e2e and security
 * suites run exactly what compose.yaml says — same images, environment, capabilities,
 * read-only roots, tmpfs, limits, networks — only under their own project name and with
 * ports published on random loopback ports.
 */
export interface PortSpec {
  hostIp: string;
  hostPort: string;
  containerPort: number;
  protocol: string;
}

export interface VolumeSpec {
  source: string;
  target: string;
  readOnly: boolean;
  /** `source` is a host path to bind-mount, not a named volume (set by a test's adjust hook). */
  bind?: boolean;
}

export interface ServiceSpec {
  name: string;
  image: string;
  command?: string[];
  environment: Record<string, string>;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  readOnly: boolean;
  tmpfs: Record<string, string>;
  volumes: VolumeSpec[];
  sysctls: Record<string, string>;
  memoryBytes?: number;
  /** memswap_limit: memory + swap. */
  memorySwapBytes?: number;
  pidsLimit?: number;
  /** stop_grace_period in seconds: how long `docker stop` waits before SIGKILL. */
  stopGraceSeconds?: number;
  /** ulimits.core as soft/hard (a single number sets both). */
  coreLimit?: { soft: number; hard: number };
  ports: PortSpec[];
  networks: string[];
  /** Aliases the service has on one network only, besides its name (which it has on all). */
  aliases: Record<string, string[]>;
  networkMode?: string;
  restart: string;
  dependsOn: Record<string, string>;
  /** Replaces the image's HEALTHCHECK command (Docker's Test form), for a container the test runs something else in. */
  healthcheck?: string[];
}

export interface ComposeSpec {
  services: Record<string, ServiceSpec>;
  /**
   * `ipv6Subnet` (set by a test's adjust hook, never by compose.yaml): the network also gets
   * IPv6 from this subnet, as compose's `enable_ipv6` with an IPAM subnet would give it.
   */
  networks: Record<string, { internal: boolean; ipv6Subnet?: string }>;
  volumes: string[];
}

/** A compose duration (`25s`, `1m30s`, `1m`) in whole seconds. */
function parseSeconds(text: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || (m[1] === undefined && m[2] === undefined)) throw new Error(`unsupported duration ${JSON.stringify(text)}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

function composeCommand(): { cmd: string; args: string[] } {
  try {
    execFileSync('docker', ['compose', 'version'], { stdio: 'ignore' });
    return { cmd: 'docker', args: ['compose'] };
  } catch {
    return { cmd: 'docker-compose', args: [] };
  }
}

/** A scalar from the YAML as text; objects would be a compose format we do not know. */
function scalar(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`unexpected value in compose config: ${JSON.stringify(v)}`);
}

function parseBytes(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return v;
  const m = /^(\d+)([bkmg]?)b?$/i.exec(scalar(v).trim());
  if (!m) throw new Error(`cannot parse memory size ${JSON.stringify(v)}`);
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

function parsePort(p: unknown): PortSpec {
  if (typeof p === 'string') {
    const m = /^(?:([\d.:[\]a-fA-F]*):)?(\d*):(\d+)(?:\/(tcp|udp))?$/.exec(p);
    if (!m) throw new Error(`cannot parse port ${p}`);
    return { hostIp: m[1] ?? '', hostPort: m[2] ?? '', containerPort: Number(m[3]), protocol: m[4] ?? 'tcp' };
  }
  const o = p as { target: number; published?: string | number; host_ip?: string; protocol?: string };
  return { hostIp: o.host_ip ?? '', hostPort: o.published === undefined ? '' : String(o.published), containerPort: Number(o.target), protocol: o.protocol ?? 'tcp' };
}

function parseVolume(v: unknown): VolumeSpec {
  if (typeof v === 'string') {
    const [source, target, mode] = v.split(':');
    return { source: source!, target: target!, readOnly: mode === 'ro' };
  }
  const o = v as { source: string; target: string; read_only?: boolean };
  return { source: o.source, target: o.target, readOnly: o.read_only === true };
}

function asStringMap(v: unknown): Record<string, string> {
  if (!v) return {};
  if (Array.isArray(v)) return Object.fromEntries(v.map((e: string) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, val]) => [k, val === null || val === undefined ? '' : scalar(val)]));
}

/**
 * Loads and normalises compose.yaml with `env` overriding the process environment. A service
 * with `profiles:` is kept only when one of them is in `profiles`, as `docker compose
 * --profile` starts it (compose v1 lists every service in `config`, v2 only the active ones),
 * and only the networks the kept services use are kept.
 */
export function loadCompose(env: Record<string, string>, profiles: readonly string[] = []): ComposeSpec {
  const { cmd, args } = composeCommand();
  const text = execFileSync(cmd, [...args, ...profiles.flatMap((p) => ['--profile', p]), '-f', `${REPO_ROOT}/compose.yaml`, 'config'], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  const raw = parse(text) as {
    services: Record<string, Record<string, unknown>>;
    networks?: Record<string, { internal?: boolean } | null>;
    volumes?: Record<string, unknown>;
  };
  const services: Record<string, ServiceSpec> = {};
  for (const [name, s] of Object.entries(raw.services)) {
    const own = (s.profiles as string[] | undefined) ?? [];
    if (own.length > 0 && !own.some((p) => profiles.includes(p))) continue;
    const tmpfs: Record<string, string> = {};
    for (const t of (s.tmpfs as string[] | undefined) ?? []) {
      const i = t.indexOf(':');
      tmpfs[i < 0 ? t : t.slice(0, i)] = i < 0 ? '' : t.slice(i + 1);
    }
    const networks = s.networks ? (Array.isArray(s.networks) ? (s.networks as string[]) : Object.keys(s.networks)) : [];
    const aliases: Record<string, string[]> = {};
    if (s.networks && !Array.isArray(s.networks)) {
      for (const [net, opts] of Object.entries(s.networks as Record<string, { aliases?: string[] } | null>)) aliases[net] = opts?.aliases ?? [];
    }
    const dependsOn: Record<string, string> = {};
    const dep = s.depends_on as Record<string, { condition?: string }> | string[] | undefined;
    if (Array.isArray(dep)) for (const d of dep) dependsOn[d] = 'service_started';
    else for (const [d, c] of Object.entries(dep ?? {})) dependsOn[d] = c?.condition ?? 'service_started';
    const memory = parseBytes(s.mem_limit);
    const memorySwap = parseBytes(s.memswap_limit);
    const core = (s.ulimits as Record<string, unknown> | undefined)?.core;
    const coreLimit = typeof core === 'number' ? { soft: core, hard: core } : core && typeof core === 'object' ? { soft: Number((core as { soft: unknown }).soft), hard: Number((core as { hard: unknown }).hard) } : undefined;
    services[name] = {
      name,
      image: scalar(s.image),
      ...(s.command ? { command: Array.isArray(s.command) ? (s.command as string[]) : scalar(s.command).split(' ') } : {}),
      environment: asStringMap(s.environment),
      capAdd: (s.cap_add as string[] | undefined) ?? [],
      capDrop: (s.cap_drop as string[] | undefined) ?? [],
      securityOpt: (s.security_opt as string[] | undefined) ?? [],
      readOnly: s.read_only === true,
      tmpfs,
      volumes: ((s.volumes as unknown[] | undefined) ?? []).map(parseVolume),
      sysctls: asStringMap(s.sysctls),
      ...(memory !== undefined ? { memoryBytes: memory } : {}),
      ...(memorySwap !== undefined ? { memorySwapBytes: memorySwap } : {}),
      ...(coreLimit !== undefined ? { coreLimit } : {}),
      ...(s.pids_limit !== undefined ? { pidsLimit: Number(s.pids_limit) } : {}),
      ...(s.stop_grace_period !== undefined ? { stopGraceSeconds: parseSeconds(scalar(s.stop_grace_period)) } : {}),
      ports: ((s.ports as unknown[] | undefined) ?? []).map(parsePort),
      networks,
      aliases,
      ...(s.network_mode ? { networkMode: scalar(s.network_mode) } : {}),
      restart: scalar(s.restart ?? 'no'),
      dependsOn,
    };
  }
  return {
    services,
    networks: Object.fromEntries(
      Object.entries(raw.networks ?? {})
        .filter(([k]) => Object.values(services).some((s) => s.networks.includes(k)))
        .map(([k, v]) => [k, { internal: v?.internal === true }]),
    ),
    volumes: Object.keys(raw.volumes ?? {}),
  };
}
