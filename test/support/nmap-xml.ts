/**
 * nmap's XML report (`-oX -`), read into what the exposure tests assert on. Reading the
 * report instead of grepping the human output means a scan that did not run, stopped
 * early, or skipped a host is an error rather than "no open ports": the run must say it
 * finished with exit="success", and every host must account for every port asked for.
 */

export interface ScannedHost {
  address: string;
  /** 'up' with the reason nmap gives ('arp-response', 'user-set' under -Pn, ...). */
  status: string;
  reason: string;
  /** Ports nmap listed one by one, with their state. */
  ports: Map<number, string>;
  /** Ports nmap summarised by state ("65533 closed ports"). */
  extraports: { state: string; count: number }[];
}

export interface NmapReport {
  hosts: Map<string, ScannedHost>;
}

export class NmapReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NmapReportError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

function attr(tag: string, name: string): string | undefined {
  return new RegExp(`\\b${name}="([^"]*)"`).exec(tag)?.[1];
}

/** Parses nmap's XML output; throws unless the run finished successfully. */
export function parseNmapXml(xml: string): NmapReport {
  const finished = /<finished\b[^>]*>/.exec(xml)?.[0];
  if (!finished) throw new NmapReportError(`nmap's report has no <finished> element (the scan did not complete): ${xml.slice(-500)}`);
  if (attr(finished, 'exit') !== 'success') throw new NmapReportError(`nmap reports exit="${attr(finished, 'exit')}": ${attr(finished, 'errormsg') ?? ''}`);
  const hosts = new Map<string, ScannedHost>();
  for (const [, body] of xml.matchAll(/<host\b[^>]*>([\s\S]*?)<\/host>/g)) {
    const status = /<status\b[^>]*>/.exec(body!)?.[0] ?? '';
    const address = [...body!.matchAll(/<address\b[^>]*>/g)].map((m) => m[0]).find((a) => attr(a, 'addrtype') === 'ipv4' || attr(a, 'addrtype') === 'ipv6');
    if (!address) throw new NmapReportError(`a host without an IP address in nmap's report: ${body!.slice(0, 300)}`);
    const ports = new Map<number, string>();
    for (const [, portTag, stateTag] of body!.matchAll(/<port\b([^>]*)>\s*<state\b([^>]*)>/g)) {
      ports.set(Number(attr(portTag!, 'portid')), attr(stateTag!, 'state') ?? '');
    }
    const extraports = [...body!.matchAll(/<extraports\b[^>]*>/g)].map((m) => ({ state: attr(m[0], 'state') ?? '', count: Number(attr(m[0], 'count')) }));
    hosts.set(attr(address, 'addr')!, { address: attr(address, 'addr')!, status: attr(status, 'state') ?? '', reason: attr(status, 'reason') ?? '', ports, extraports });
  }
  return { hosts };
}

/** How many ports a `-p` list names ("1-65535", "22,80,443", "1-10,443"). */
export function portCount(spec: string): number {
  return spec.split(',').reduce((n, part) => {
    const [lo, hi] = part.split('-').map(Number);
    return n + (hi === undefined ? 1 : hi - lo! + 1);
  }, 0);
}

/**
 * The host as scanned: it must be in the report, up, and every one of the `requested`
 * ports must be accounted for, listed or summarised; otherwise nmap skipped something
 * (host timeout, a host it thought down) and the absence of "open" means nothing.
 */
export function scannedHost(report: NmapReport, address: string, requested: number): ScannedHost {
  const host = report.hosts.get(address);
  if (!host) throw new NmapReportError(`${address} is not in nmap's report (hosts: ${[...report.hosts.keys()].join(', ') || 'none'})`);
  if (host.status !== 'up') throw new NmapReportError(`nmap reports ${address} ${host.status} (${host.reason})`);
  const accounted = host.ports.size + host.extraports.reduce((n, e) => n + e.count, 0);
  if (accounted !== requested) throw new NmapReportError(`nmap accounted for ${accounted} of ${requested} ports on ${address}`);
  return host;
}

/** Open ports of a scanned host, ascending. */
export function openPorts(host: ScannedHost): number[] {
  return [...host.ports].filter(([, state]) => state === 'open').map(([port]) => port).sort((a, b) => a - b);
}

/** Every state the host's ports were found in (listed and summarised). */
export function portStatesSeen(host: ScannedHost): string[] {
  return [...new Set([...host.ports.values(), ...host.extraports.map((e) => e.state)])].sort();
}

/**
 * The state of one port: as listed, or else the state of the summary it falls in, which
 * is only known when every unlisted port shares one state.
 */
export function portState(host: ScannedHost, port: number): string {
  const listed = host.ports.get(port);
  if (listed !== undefined) return listed;
  const summarised = [...new Set(host.extraports.map((e) => e.state))];
  if (summarised.length !== 1) throw new NmapReportError(`port ${port} of ${host.address} is not listed and the summary has ${summarised.length} states`);
  return summarised[0]!;
}
