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

/**
 * Whether an interface of this network namespace has an IPv6 address, so that nginx and the
 * SSH server listen on [::] too. Not net.ipv6.conf.all.disable_ipv6: Docker sets it to 1 in
 * every container and enables IPv6 per interface on a network with IPv6, where reading it
 * left the gateway unreachable over IPv6 (found by test/security/exposure.test.ts). Without
 * the kernel's IPv6 (ipv6.disable=1) the file is not there at all.
 */
export function ipv6Enabled(): boolean {
  return (readProc('/proc/net/if_inet6') ?? '') !== '';
}
