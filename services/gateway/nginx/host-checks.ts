import { readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * nginx runs as a non-root user without CAP_NET_BIND_SERVICE, so ports below the
 * namespace's `ip_unprivileged_port_start` cannot be bound. Say so up front, naming the
 * variable and the fix, instead of letting nginx crash-loop on EACCES.
 */
export function checkPortsBindable(ports: { name: string; port: number }[]): void {
  if (process.getuid?.() === 0) return;
  const start = Number(readProc('/proc/sys/net/ipv4/ip_unprivileged_port_start') ?? '1024');
  const bad = ports.filter((p) => p.port < start);
  if (bad.length > 0) {
    throw new ConfigError(
      bad.map(
        (p) =>
          `${p.name}=${p.port}: below net.ipv4.ip_unprivileged_port_start=${start}; run the container with sysctl net.ipv4.ip_unprivileged_port_start=0 (compose: sysctls) or pick a port >= ${start}`,
      ),
    );
  }
}

/** Whether this network namespace has IPv6 enabled (nginx cannot listen on [::] otherwise). */
export function ipv6Enabled(): boolean {
  return readProc('/proc/sys/net/ipv6/conf/all/disable_ipv6') === '0' && (readProc('/proc/net/if_inet6') ?? '') !== '';
}
