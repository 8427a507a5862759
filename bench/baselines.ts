import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { REPO_ROOT } from '../test/support/stack/build';
import { TEST_TAG } from '../test/support/stack/fixture';
import { execIn, type Stack } from '../test/support/stack/stack';
import { waitFor } from '../test/support/wait';
import { TLS_SERVER_DIRECTIVES } from '../services/gateway/nginx/config';
import type { Target } from './load';

/**
 * The setups a user would build instead of the chain, from the same parts, beside the stack
 * under test (same networks, same core, same keys):
 *
 *   (b) TLS edge:   client → nginx (TLS) → core (mutual TLS)
 *   (c) DIY tunnel: client → nginx (TLS) → 127.0.0.1:9443 = `ssh -R` on the public host →
 *                   SSH connection opened by the hidden host (autossh) → core (mutual TLS)
 *
 * nginx is the gateway image's own binary with a minimal proxy configuration: one worker
 * and the TLS settings the gateway's nginx uses (services/gateway/nginx/config.ts), an
 * access line per request to stdout as the gateway's nginx writes, keep-alive connections
 * upstream. core, on the internal network, is reached with the broker's client certificate,
 * as the broker and the direct baseline do. In (c) the public host is not on the private
 * network at all: core is reachable only through the tunnel, which is the point of it.
 */

const NGINX_PORT = 8443;
const SSH_PORT = 2222;
const TUNNEL_PORT = 9443;

/** The TLS edge's nginx.conf: a minimal reverse proxy to core over mutual TLS. */
export function baselineNginxConf(upstream: string): string {
  return `worker_processes 1;
pid /tmp/nginx.pid;
daemon off;
error_log stderr warn;
events {
  worker_connections 2048;
}
http {
  access_log /dev/stdout;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  keepalive_timeout 30s;
  keepalive_requests 10000;
  upstream core {
    server ${upstream};
    keepalive 64;
  }
  server {
    listen ${NGINX_PORT} ssl;
    ssl_certificate /gw/tls/server.crt;
    ssl_certificate_key /gw/tls/server.key;
${TLS_SERVER_DIRECTIVES}
    location /v1/ {
      proxy_pass https://core;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      # nginx 1.22 offers TLS 1.2 at most upstream unless told; core speaks only TLS 1.3.
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate /keys/client.crt;
      proxy_ssl_certificate_key /keys/client.key;
      proxy_ssl_trusted_certificate /keys/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name core;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
`;
}

/** The public host's sshd: keys only, one user, remote forwards to its own loopback only. */
export const SSHD_CONFIG = `Port ${SSH_PORT}
HostKey /home/tunnel/sshd/host_ed25519_key
AuthorizedKeysFile /home/tunnel/sshd/authorized_keys
AllowUsers tunnel
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowTcpForwarding remote
GatewayPorts no
X11Forwarding no
PermitTTY no
PidFile /home/tunnel/sshd/sshd.pid
`;

/** The hidden host's tunnel, as an autossh setup keeps it: reconnects, keep-alives, fails if the forward is refused. */
const AUTOSSH = [
  'autossh', '-M', '0', '-N', '-T',
  '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=3', '-o', 'ExitOnForwardFailure=yes',
  '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'IdentitiesOnly=yes', '-i', '/home/tunnel/.ssh/id_ed25519',
  '-p', String(SSH_PORT), '-R', `127.0.0.1:${TUNNEL_PORT}:core:8443`, 'tunnel@bench-public',
];

export interface Baselines {
  edge: Target;
  tunnel: Target;
  /** Containers to watch, by name: the nginx of (b); nginx, sshd and the hidden host of (c). */
  containers: Record<string, Docker.Container>;
  /** Which of those (and of the stack's) each path's requests pass through, client excluded. */
  paths: { edge: string[]; tunnel: string[] };
}

let tunnelImage: Promise<string> | undefined;

/** Builds the bench-only OpenSSH image (bench/images/Dockerfile.tunnel) once per process. */
export function benchTunnelImage(): Promise<string> {
  tunnelImage ??= (async () => {
    const child = promisify(execFile)('bash', [join(REPO_ROOT, 'bench', 'images', 'build.sh'), TEST_TAG], { cwd: REPO_ROOT, maxBuffer: 1 << 20 });
    child.child.stderr?.pipe(process.stderr);
    const { stdout } = await child;
    const line = stdout.split('\n').find((l) => l.startsWith('tunnel='));
    if (!line) throw new Error(`bench/images/build.sh reported no tunnel image: ${stdout}`);
    return line.slice('tunnel='.length);
  })();
  return tunnelImage;
}

/**
 * Starts (b) and (c) beside `stack` and waits until a GET of `recordId` is served through
 * each. `client` is the chain's client on `edge` (it mounts the gateway's certificate at /gw).
 */
export async function startBaselines(stack: Stack, client: Docker.Container, token: string, recordId: string): Promise<Baselines> {
  const image = await benchTunnelImage();
  const d = stack.docker;
  const net = (n: string): string => stack.name(n);
  const keys = [
    { Type: 'volume' as const, Source: stack.name('gateway-keys'), Target: '/gw', ReadOnly: true },
    { Type: 'volume' as const, Source: stack.name('broker-keys'), Target: '/keys', ReadOnly: true },
  ];
  const nginx = async (name: string, alias: string, upstream: string, networks: string[]): Promise<Docker.Container> => {
    const c = await d.createContainer({
      name: `${stack.project}_${name}`,
      Image: stack.images.gateway,
      // The gateway image's nginx alone; its health check probes the gateway app, which is not here.
      Cmd: ['sh', '-c', 'printf "%s" "$NGINX_CONF" > /tmp/nginx.conf && exec nginx -e stderr -c /tmp/nginx.conf'],
      Env: [`NGINX_CONF=${baselineNginxConf(upstream)}`],
      Healthcheck: { Test: ['NONE'] },
      Labels: { 'nonstop.test': stack.project },
      HostConfig: { NetworkMode: net(networks[0]!), Mounts: keys, CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges:true'] },
      NetworkingConfig: { EndpointsConfig: { [net(networks[0]!)]: { Aliases: [alias] } } },
    });
    for (const n of networks.slice(1)) await d.getNetwork(net(n)).connect({ Container: c.id });
    await c.start();
    return c;
  };

  // (b) nginx on edge and private, straight to core.
  const edgeNginx = await nginx('bench_edge_nginx', 'bench-edge', 'core:8443', ['edge', 'private']);

  // (c) the public host: nginx on edge only, and sshd in its network namespace, so the
  // reverse-forwarded port is nginx's own 127.0.0.1.
  const publicNginx = await nginx('bench_public_nginx', 'bench-public', `127.0.0.1:${TUNNEL_PORT}`, ['edge']);
  const sshd = await d.createContainer({
    name: `${stack.project}_bench_public_sshd`,
    Image: image,
    Cmd: ['sh', '-c', 'mkdir -m 700 sshd && printf "%s" "$SSHD_CONFIG" > sshd/config && ssh-keygen -q -t ed25519 -N "" -f sshd/host_ed25519_key && exec /usr/sbin/sshd -D -e -f sshd/config'],
    Env: [`SSHD_CONFIG=${SSHD_CONFIG}`],
    Labels: { 'nonstop.test': stack.project },
    HostConfig: { NetworkMode: `container:${publicNginx.id}`, CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges:true'] },
  });
  await sshd.start();
  // The hidden host: on private (reaches core) and edge (reaches the public host), like the broker.
  const hidden = await d.createContainer({
    name: `${stack.project}_bench_hidden_autossh`,
    Image: image,
    Cmd: ['sh', '-c', `mkdir -m 700 .ssh && ssh-keygen -q -t ed25519 -N "" -f .ssh/id_ed25519 && while [ ! -s .ssh/known_hosts ]; do sleep 0.1; done && exec ${AUTOSSH.join(' ')}`],
    // Keep retrying even when the first attempt fails fast (sshd still starting).
    Env: ['AUTOSSH_GATETIME=0'],
    Labels: { 'nonstop.test': stack.project },
    HostConfig: { NetworkMode: net('private'), CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges:true'] },
  });
  await d.getNetwork(net('edge')).connect({ Container: hidden.id });
  await hidden.start();

  // Trust both ways: the hidden host's key authorised for `tunnel`, the public host's key pinned.
  const read = async (c: Docker.Container, path: string): Promise<string> =>
    waitFor(`${path}`, async () => {
      const r = await execText(stack, c, ['cat', path]);
      return r.trim() !== '' ? r.trim() : undefined;
    }, 30_000, 200);
  const clientKey = await read(hidden, '/home/tunnel/.ssh/id_ed25519.pub');
  await writeFile(stack, sshd, '/home/tunnel/sshd/authorized_keys', `${clientKey}\n`);
  const hostKey = (await read(sshd, '/home/tunnel/sshd/host_ed25519_key.pub')).split(' ').slice(0, 2).join(' ');
  await writeFile(stack, hidden, '/home/tunnel/.ssh/known_hosts', `[bench-public]:${SSH_PORT} ${hostKey}\n`);

  const base = { client, port: NGINX_PORT, servername: 'gateway', ca: '/gw/tls/server.crt', requestId: true, token } as const;
  const edge: Target = { ...base, label: 'nginx edge', host: await stack.addressOf(edgeNginx, 'edge') };
  const tunnel: Target = { ...base, label: 'nginx + ssh -R', host: await stack.addressOf(publicNginx, 'edge') };
  for (const t of [edge, tunnel]) await servesGet(stack, t, recordId);
  return {
    edge,
    tunnel,
    containers: { 'edge nginx': edgeNginx, 'public nginx': publicNginx, 'public sshd': sshd, 'hidden autossh': hidden },
    paths: { edge: ['edge nginx', 'core'], tunnel: ['public nginx', 'public sshd', 'hidden autossh', 'core'] },
  };
}

async function execText(stack: Stack, c: Docker.Container, cmd: string[]): Promise<string> {
  const r = await execIn(stack.docker, c, cmd);
  if (r.exitCode !== 0) throw new Error(`${cmd.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

async function writeFile(stack: Stack, c: Docker.Container, path: string, content: string): Promise<void> {
  await execText(stack, c, ['sh', '-c', 'printf "%s" "$1" > "$2" && chmod 644 "$2"', 'sh', content, path]);
}

/** Waits until a GET through `t` is answered 200 (the tunnel is up, nginx resolved core). */
async function servesGet(stack: Stack, t: Target, recordId: string): Promise<void> {
  await waitFor(
    `a GET through ${t.label}`,
    async () => {
      const out = await execText(stack, t.client, [
        'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5',
        '--cacert', t.ca, '--resolve', `${t.servername}:${t.port}:${t.host}`,
        '-H', `authorization: Bearer ${t.token}`, '-H', `x-request-id: ${randomUUID()}`,
        `https://${t.servername}:${t.port}/v1/records/notes/${recordId}`,
      ]);
      return out.trim() === '200';
    },
    60_000,
    500,
  );
}
