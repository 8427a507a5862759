/**
 * nginx.conf for the gateway, rendered from the typed config (pure; `nginx -t` checks the
 * output in the tests). nginx runs as the gateway's non-root user with everything it
 * writes under a tmpfs runtime directory; it is the only thing the internet talks to.
 *
 * Limits live here so a hostile client is turned away before Node.js sees a byte:
 * body size (413), header size (400/494 → JSON), slow headers and bodies (timeouts),
 * requests and connections per address (429). How many requests and body bytes may be
 * pending at once is the app's admission control (503 overloaded): bodies stream to it.
 * Every error nginx produces itself is JSON in the same shape as the app's.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { apiErrorBody } from '../../common/errors/api-error';
import { ErrorCodes, type ErrorCodeName } from '../../common/errors/codes';
import { RETRY_AFTER_SECONDS } from '../http/admission';

export interface NginxOptions {
  runDir: string;
  /** Where access lines go: /dev/stdout in the image (a pipe there), a file in tests. */
  accessLog: string;
  httpPort: number;
  httpsPort: number;
  /**
   * The names plain HTTP redirects for (TLS_NAMES, the names the certificate is for): DNS
   * names or IP addresses, each checked by isServerName.
   */
  serverNames: string[];
  /** The HTTPS port clients reach the gateway on, written into the redirect (PUBLIC_HTTPS_PORT). */
  publicHttpsPort: number;
  ipv6: boolean;
  /** The one address to listen on (LISTEN_ADDRESS); undefined: every IPv4 address, and IPv6 when `ipv6`. */
  listenAddress?: string | undefined;
  appPort: number;
  certFile: string;
  keyFile: string;
  maxBodyBytes: number;
  ratePerSecond: number;
  rateBurst: number;
  connectionsPerAddress: number;
  requestTimeoutMs: number;
}

/**
 * Connections nginx holds at once, clients' and the app's together. A client's TLS
 * connection costs nginx 18 KiB idle and ~47 KiB while a burst of them is in handshake
 * (OpenSSL 3; measured: 1,000 at once, 47 MiB), so this bound is what keeps nginx near
 * 100 MiB beside the app inside the container's 256 MiB (4096 could take 190 MiB on its
 * own; 2048 peaked at 92-118 MiB under 4,096 clients). When it is reached nginx first
 * closes idle connections (keep-alive, waiting, lingering), else a new one before its TLS
 * handshake: nothing of a request has been read from either. 1536 left too few for the
 * app's connections under that burst.
 */
export const WORKER_CONNECTIONS = 2048;

/**
 * Requests passed to the app at once, from every address together; more get 429 at once,
 * their bodies never read. Each passed request holds a client connection and one to the
 * app, so bounding them keeps room in WORKER_CONNECTIONS for its upstream connection and
 * for new clients: without it, 4,096 clients filled the table and requests got 500
 * ("worker_connections are not enough while connecting to upstream"). It also bounds the
 * sockets and in-flight bodies the app must hold. The app's own admission (pending
 * requests and bytes, 503 overloaded) refuses below it.
 */
export const PROXIED_REQUESTS = 256;

/** nginx's own error statuses, each answered with the shared code and a fixed message. */
const JSON_ERRORS: Record<number, [ErrorCodeName, string]> = {
  400: ['badRequest', 'malformed request'],
  404: ['notFound', 'no such endpoint'],
  405: ['methodNotAllowed', 'method not allowed'],
  408: ['requestTimeout', 'request took too long to arrive'],
  413: ['bodyTooLarge', 'body too large'],
  414: ['uriTooLong', 'URI too long'],
  429: ['rateLimited', 'too many requests'],
  494: ['headersTooLarge', 'request headers too large'],
  500: ['internal', 'internal error'],
  502: ['unavailable', 'gateway app unavailable'],
  503: ['unavailable', 'service unavailable'],
  504: ['deadline', 'the request did not complete in time'],
};

const DNS_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const DNS_NAME = new RegExp(`^(?=.{1,253}$)${DNS_LABEL}(?:\\.${DNS_LABEL})*$`);

/**
 * A name nginx may serve and redirect to: a DNS name (no wildcard: a redirect needs one
 * concrete host), an IPv4 address or an IPv6 address without a zone. Anything else could
 * change the meaning of the rendered config or of the Location it is written into.
 */
export function isServerName(name: string): boolean {
  return DNS_NAME.test(name) || isIPv4(name) || (isIPv6(name) && !name.includes('%'));
}

/** The name as it appears in a Host header and in a URL's authority (IPv6 in brackets). */
function hostForm(name: string): string {
  return isIPv6(name) ? `[${name}]` : name;
}

/**
 * `return <status> '<JSON>';` for nginx. The messages above are fixed text without quotes,
 * backslashes or `$`, so the JSON needs no escaping inside nginx's single quotes.
 */
function returnJson(status: number, kind: ErrorCodeName, message: string): string {
  return `return ${status} '${JSON.stringify(apiErrorBody(kind, message))}';`;
}

/**
 * nginx's 500 and 504 for a request it never got a connection to the app for: out of
 * connections (worker_connections are not enough while connecting to upstream) or the
 * connect timer fired. The app never saw the request, so it is known not stored, unlike
 * what 500 internal and 504 deadline_exceeded say: answered as overload. An upstream
 * connect that never finished leaves $upstream_connect_time "-"; a request that never
 * reached the upstream module leaves it empty.
 */
const NOT_SENT_STATUSES = new Set(['500', '504']);

function errorLocations(): string {
  return Object.entries(JSON_ERRORS)
    .map(([status, [kind, message]]) => {
      // 494 is nginx's own code for oversized headers; clients see 400.
      const sent = status === '494' ? 400 : Number(status);
      const notSent = NOT_SENT_STATUSES.has(status)
        ? `      if ($upstream_connect_time = "-") {\n        add_header Retry-After ${RETRY_AFTER_SECONDS} always;\n        ${returnJson(ErrorCodes.overloaded.status, 'overloaded', 'the gateway could not pass the request on; retry later')}\n      }\n`
        : '';
      return `    location = /_nonstop_error/${status} {\n      internal;\n      default_type application/json;\n${notSent}      ${returnJson(sent, kind, message)}\n    }`;
    })
    .join('\n');
}

function errorPages(): string {
  // `=`: the page's own return decides the status, so a not-sent 500 or 504 can be a 503
  // (without it nginx keeps the original status whatever the page returns).
  return Object.keys(JSON_ERRORS)
    .map((s) => `    error_page ${s} ${NOT_SENT_STATUSES.has(s) ? '= ' : ''}/_nonstop_error/${s};`)
    .join('\n');
}

/**
 * Plain HTTP: tokens must never travel in clear, so it only points to HTTPS, and only for
 * the names the gateway is configured for. Each name gets a server of its own whose
 * Location is written here, from configuration; the request's Host header only selects
 * among them and is never copied into the answer. (`https://$host` echoed any Host a
 * client sent: an open redirect, and a redirect to a name of the client's choosing for any
 * cache between to keep.) Any other Host, or none, lands in the default server: a JSON
 * 400 that names nothing from the request.
 *
 * The port in Location is the one clients reach HTTPS on, which the gateway cannot see
 * when Docker publishes its 443 on another host port: PUBLIC_HTTPS_PORT says it, and
 * defaults to HTTPS_PORT, right for host networking and for publishing the same port
 * (compose's default, 443:443). 443 is left out, as clients write it.
 */
function redirectServers(o: NginxOptions, listen: (port: number, ssl: boolean, flags?: string) => string): string {
  const bad = o.serverNames.filter((n) => !isServerName(n));
  if (o.serverNames.length === 0 || bad.length > 0) throw new TypeError(`server names must be DNS names or IP addresses: ${JSON.stringify(o.serverNames)}`);
  const port = o.publicHttpsPort === 443 ? '' : `:${o.publicHttpsPort}`;
  const named = o.serverNames.map(
    (name) => `  server {
${listen(o.httpPort, false)}
    server_name ${hostForm(name)};
    location / {
      default_type application/json;
      return 308 https://${hostForm(name)}${port}$request_uri;
    }
  }`,
  );
  return [
    `  server {
${listen(o.httpPort, false, ' default_server')}
    location / {
      default_type application/json;
      ${returnJson(400, 'badRequest', 'unknown host')}
    }
  }`,
    ...named,
  ].join('\n\n');
}

/**
 * The public TLS endpoint's protocol settings, indented for a server block; the comment
 * where they are used says why each. Exported so the benchmark's TLS-edge baseline offers
 * clients exactly what the gateway does.
 */
export const TLS_SERVER_DIRECTIVES = `    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:TLS:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;`;

export function renderNginxConf(o: NginxOptions): string {
  const listen = (port: number, ssl: boolean, flags = ''): string => {
    const suffix = `${ssl ? ' ssl' : ''}${flags}`;
    if (o.listenAddress !== undefined) return `    listen ${isIPv6(o.listenAddress) ? `[${o.listenAddress}]` : o.listenAddress}:${port}${suffix};`;
    return `    listen ${port}${suffix};` + (o.ipv6 ? `\n    listen [::]:${port}${suffix};` : '');
  };
  const timeoutS = Math.ceil(o.requestTimeoutMs / 1000) + 5;
  return `# Rendered by the gateway at start; do not edit.
worker_processes 1;
pid ${o.runDir}/nginx.pid;
daemon off;
error_log stderr warn;

events {
  # WORKER_CONNECTIONS in nginx/config.ts says why this many.
  worker_connections ${WORKER_CONNECTIONS};
}

http {
  default_type application/octet-stream;
  server_tokens off;
  # Access lines are JSON in the same shape as the app's (service, component, level,
  # message), written straight to the container's stdout. Paths only; never bodies or
  # query strings, which could carry data.
  log_format json escape=json '{"service":"gateway","component":"nginx","level":"info","message":"access","timestamp":"$time_iso8601","remote":"$remote_addr","method":"$request_method","uri":"$uri","status":$status,"bytes":$bytes_sent,"request_time":$request_time,"requestId":"$upstream_http_x_request_id"}';
  access_log ${o.accessLog} json;

  client_body_temp_path ${o.runDir}/client_body;
  proxy_temp_path ${o.runDir}/proxy;
  fastcgi_temp_path ${o.runDir}/fastcgi;
  uwsgi_temp_path ${o.runDir}/uwsgi;
  scgi_temp_path ${o.runDir}/scgi;

  # Bodies are streamed to the app (proxy_request_buffering off below), never gathered here:
  # the app's admission control refuses a request from its headers (Content-Length) before a
  # byte of its body is read, and a body it takes passes through one fixed 16k buffer per
  # request. Gathering each body (a 1 MiB buffer per connection, as before) let N concurrent
  # uploads take N MiB of nginx's memory, and a body larger than the buffer would go to
  # client_body_temp_path: a tmpfs, which is memory too (and only 16 MiB). Nothing a client
  # sends is written to disk.
  client_max_body_size ${o.maxBodyBytes};
  client_body_buffer_size 16k;
  client_header_buffer_size 1k;
  large_client_header_buffers 4 8k;
  # Slowloris: a client that trickles headers or body is cut off. client_header_timeout bounds
  # the whole header, client_body_timeout only the gap between two reads of a body. A body
  # nginx answers itself (413, 429, 404) is read and thrown away for at most lingering_time
  # (nginx's default, written out as the bound it is); one streamed to the app is ended by the
  # app's BODY_TIMEOUT_MS (http/body-deadline.ts). test/security/slow-bodies.test.ts has both.
  client_header_timeout 10s;
  client_body_timeout 10s;
  lingering_time 30s;
  send_timeout 10s;
  keepalive_timeout 30s;
  keepalive_requests 10000;
  reset_timedout_connection on;

  limit_req_zone $binary_remote_addr zone=per_address:10m rate=${o.ratePerSecond}r/s;
  limit_conn_zone $binary_remote_addr zone=conn_per_address:10m;
  # One key for every request: the total passed to the app (PROXIED_REQUESTS says why).
  limit_conn_zone $server_port zone=conn_total:1m;
  limit_req_status 429;
  limit_conn_status 429;

  upstream gateway_app {
    server 127.0.0.1:${o.appPort};
    keepalive 64;
  }

${redirectServers(o, listen)}

  server {
${listen(o.httpsPort, true)}
    ssl_certificate ${o.certFile};
    ssl_certificate_key ${o.keyFile};
    # Mozilla's "intermediate" profile (guidelines 5.7), checked by sslyze in the suite
    # (test/security/tls-scan.test.ts): TLS 1.2 only with ECDHE and AEAD (AES-GCM,
    # ChaCha20-Poly1305; no CBC, CCM, CAMELLIA, ARIA), TLS 1.3's suites (OpenSSL's default
    # three, all AEAD), the three curves the profile names, no session tickets (their key
    # would undo forward secrecy until restart). Not "modern" (TLS 1.3 only): API clients
    # include runtimes whose TLS stops at 1.2 (Java 8, OpenSSL 1.0.2, .NET on older Windows),
    # and the 1.2 suites left here have no known weakness. No DHE: the profile's DHE suites
    # need an ssl_dhparam file, and every client of the profile has ECDHE.
${TLS_SERVER_DIRECTIVES}
    add_header Strict-Transport-Security "max-age=63072000" always;
    add_header X-Content-Type-Options nosniff always;

${errorPages()}

    location /v1/ {
      limit_req zone=per_address burst=${o.rateBurst} nodelay;
      limit_conn conn_per_address ${o.connectionsPerAddress};
      limit_conn conn_total ${PROXIED_REQUESTS};
      proxy_pass http://gateway_app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_request_buffering off;
      # Answers are buffered in memory only (proxy_buffers): one larger than those (a big
      # record read by a slow client) waits in the app's socket instead of filling the tmpfs.
      proxy_buffering on;
      proxy_max_temp_file_size 0;
      # The app is on loopback: a connection there is refused at once or accepted. Only a
      # starved event loop makes it slow: with thousands of clients' bodies to decrypt, one
      # pass over ready events took seconds, a 2 s connect timer fired first, and requests
      # the app never saw were answered 504 "may have been stored".
      proxy_connect_timeout ${timeoutS}s;
      proxy_read_timeout ${timeoutS}s;
      proxy_send_timeout ${timeoutS}s;
      # The app's own JSON errors pass through; only nginx's are replaced.
      proxy_intercept_errors off;
    }

    location / {
      default_type application/json;
      ${returnJson(404, 'notFound', 'no such endpoint')}
    }

    # Without this nginx would answer /v1 with its own HTML redirect to /v1/.
    location = /v1 {
      default_type application/json;
      ${returnJson(404, 'notFound', 'no such endpoint')}
    }

${errorLocations()}
  }
}
`;
}
