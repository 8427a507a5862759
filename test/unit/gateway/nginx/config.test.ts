import assert from 'node:assert/strict';
import { ErrorCodes } from '../../../../services/common/errors/codes';
import { isServerName, PROXIED_REQUESTS, renderNginxConf, WORKER_CONNECTIONS, type NginxOptions } from '../../../../services/gateway/nginx/config';

/** Every code the services may send: nginx's bodies must use these, not codes of their own. */
const SHARED_CODES = new Set<string>(Object.values(ErrorCodes).map((e) => e.code));

const options: NginxOptions = {
  runDir: '/run/nonstop/nginx',
  accessLog: '/dev/stdout',
  httpPort: 8080,
  httpsPort: 8443,
  serverNames: ['api.example.com', '192.0.2.10', '2001:db8::10'],
  publicHttpsPort: 443,
  ipv6: false,
  appPort: 3000,
  certFile: '/run/secrets/tls.crt',
  keyFile: '/run/secrets/tls.key',
  maxBodyBytes: 1_048_576,
  ratePerSecond: 20,
  rateBurst: 40,
  connectionsPerAddress: 16,
  requestTimeoutMs: 10_500,
};

/** The text of every server block listening on `port`. */
function serverBlocks(conf: string, port: number): string[] {
  return conf
    .split(/\n {2}server \{\n/)
    .slice(1)
    .filter((b) => new RegExp(`^    listen ${port}\\b`, 'm').test(b));
}

/** The text of the one server block listening on `port`. */
function serverBlock(conf: string, port: number): string {
  const blocks = serverBlocks(conf, port);
  assert.equal(blocks.length, 1, `server blocks listening on ${port}`);
  return blocks[0]!;
}

/** The text of `location <spec> { ... }` inside a server block. */
function locationBlock(block: string, spec: string): string {
  const start = block.indexOf(`    location ${spec} {\n`);
  assert.ok(start >= 0, `no location ${spec}`);
  return block.slice(start, block.indexOf('\n    }', start));
}

const directive = (text: string, name: string): string[] =>
  [...text.matchAll(new RegExp(`^\\s*${name} ([^;]*);`, 'gm'))].map((m) => m[1]!);

describe('renderNginxConf', () => {
  const conf = renderNginxConf(options);

  it('runs in the foreground with everything it writes under the run directory', () => {
    assert.deepEqual(directive(conf, 'daemon'), ['off']);
    assert.deepEqual(directive(conf, 'pid'), ['/run/nonstop/nginx/nginx.pid']);
    for (const temp of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
      assert.deepEqual(directive(conf, `${temp}_temp_path`), [`/run/nonstop/nginx/${temp}`]);
    }
    assert.deepEqual(directive(conf, 'error_log'), ['stderr warn']);
    assert.deepEqual(directive(conf, 'access_log'), ['/dev/stdout json']);
    assert.deepEqual(directive(conf, 'server_tokens'), ['off']);
  });

  it('limits the body to maxBodyBytes and streams it to the app through one small buffer, never to the tmpfs', () => {
    assert.deepEqual(directive(conf, 'client_max_body_size'), ['1048576']);
    assert.deepEqual(directive(renderNginxConf({ ...options, maxBodyBytes: 65_536 }), 'client_max_body_size'), ['65536']);
    assert.deepEqual(directive(conf, 'client_body_buffer_size'), ['16k']);
    assert.deepEqual(directive(conf, 'client_body_in_single_buffer'), []);
    assert.deepEqual(directive(conf, 'client_body_in_file_only'), []);
    const v1 = locationBlock(serverBlock(conf, 8443), '/v1/');
    assert.deepEqual(directive(v1, 'proxy_request_buffering'), ['off']);
    assert.deepEqual(directive(v1, 'proxy_max_temp_file_size'), ['0']);
  });

  it('holds at most 2048 connections and passes at most 256 requests on at once, leaving room for each one\'s connection to the app', () => {
    assert.deepEqual(directive(conf, 'worker_processes'), ['1']);
    assert.deepEqual(directive(conf, 'worker_connections'), ['2048']);
    assert.equal(WORKER_CONNECTIONS, 2048);
    assert.equal(PROXIED_REQUESTS, 256);
    // A client connection and an upstream one per passed request, the idle upstream pool,
    // and still half the table for clients in handshake or turned away.
    assert.ok(2 * PROXIED_REQUESTS + 64 <= WORKER_CONNECTIONS / 2);
  });

  it('bounds header sizes and cuts off slow clients', () => {
    assert.deepEqual(directive(conf, 'client_header_buffer_size'), ['1k']);
    assert.deepEqual(directive(conf, 'large_client_header_buffers'), ['4 8k']);
    assert.deepEqual(directive(conf, 'client_header_timeout'), ['10s']);
    assert.deepEqual(directive(conf, 'client_body_timeout'), ['10s']);
    assert.deepEqual(directive(conf, 'send_timeout'), ['10s']);
    assert.deepEqual(directive(conf, 'reset_timedout_connection'), ['on']);
  });

  it('waits for the app a little longer than the request deadline, in whole seconds', () => {
    assert.deepEqual(directive(conf, 'proxy_read_timeout'), ['16s']);
    assert.deepEqual(directive(conf, 'proxy_send_timeout'), ['16s']);
    assert.deepEqual(directive(conf, 'proxy_connect_timeout'), ['16s']);
    assert.deepEqual(directive(renderNginxConf({ ...options, requestTimeoutMs: 30_000 }), 'proxy_read_timeout'), ['35s']);
  });

  it('rate-limits requests and connections per address, and requests passed to the app in all, with 429', () => {
    assert.deepEqual(directive(conf, 'limit_req_zone'), ['$binary_remote_addr zone=per_address:10m rate=20r/s']);
    assert.deepEqual(directive(conf, 'limit_conn_zone'), ['$binary_remote_addr zone=conn_per_address:10m', '$server_port zone=conn_total:1m']);
    assert.deepEqual(directive(conf, 'limit_req_status'), ['429']);
    assert.deepEqual(directive(conf, 'limit_conn_status'), ['429']);
    const v1 = locationBlock(serverBlock(conf, 8443), '/v1/');
    assert.deepEqual(directive(v1, 'limit_req'), ['zone=per_address burst=40 nodelay']);
    assert.deepEqual(directive(v1, 'limit_conn'), ['conn_per_address 16', `conn_total ${PROXIED_REQUESTS}`]);
  });

  it('proxies only /v1/ to the app on loopback, without intercepting the app\'s own errors', () => {
    assert.match(conf, /upstream gateway_app \{\n\s*server 127\.0\.0\.1:3000;/);
    const https = serverBlock(conf, 8443);
    assert.equal(directive(https, 'proxy_pass').length, 1);
    const v1 = locationBlock(https, '/v1/');
    assert.deepEqual(directive(v1, 'proxy_pass'), ['http://gateway_app']);
    assert.deepEqual(directive(v1, 'proxy_intercept_errors'), ['off']);
    assert.deepEqual(directive(v1, 'proxy_set_header X-Forwarded-Proto'), ['https']);
    assert.deepEqual(directive(v1, 'proxy_set_header X-Forwarded-For'), ['$remote_addr']);
  });

  it('answers any other path with a JSON 404', () => {
    const other = locationBlock(serverBlock(conf, 8443), '/');
    assert.deepEqual(directive(other, 'default_type'), ['application/json']);
    const m = /return 404 '(.*)';/.exec(other);
    assert.ok(m);
    assert.deepEqual(JSON.parse(m[1]!), { error: { code: 'not_found', message: 'no such endpoint', stored: 'no' } });
    const bare = /return 404 '(.*)';/.exec(locationBlock(serverBlock(conf, 8443), '= /v1'));
    assert.ok(bare);
    assert.deepEqual(JSON.parse(bare[1]!), { error: { code: 'not_found', message: 'no such endpoint', stored: 'no' } });
  });

  it('sends plain HTTP to HTTPS with a 308 to each configured name, written from configuration, and nothing else', () => {
    const http = serverBlocks(conf, 8080);
    for (const block of http) assert.doesNotMatch(block, /proxy_pass|ssl/);
    const redirects = http.filter((b) => directive(b, 'server_name').length > 0);
    assert.deepEqual(
      redirects.map((b) => [directive(b, 'server_name'), directive(b, 'return')]),
      [
        [['api.example.com'], ['308 https://api.example.com$request_uri']],
        [['192.0.2.10'], ['308 https://192.0.2.10$request_uri']],
        [['[2001:db8::10]'], ['308 https://[2001:db8::10]$request_uri']],
      ],
    );
    // Nothing the client sends names the host in a Location: no $host, $http_host, $server_name.
    assert.doesNotMatch(http.join('\n'), /\$(host|http_host|server_name)\b/);
  });

  it('answers a plain HTTP request for any other host with a JSON 400 from the default server', () => {
    const fallback = serverBlocks(conf, 8080).filter((b) => directive(b, 'server_name').length === 0);
    assert.equal(fallback.length, 1);
    assert.deepEqual(directive(fallback[0]!, 'listen'), ['8080 default_server']);
    const m = /return 400 '(.*)';/.exec(locationBlock(fallback[0]!, '/'));
    assert.ok(m);
    assert.deepEqual(JSON.parse(m[1]!), { error: { code: 'bad_request', message: 'unknown host', stored: 'no' } });
    assert.deepEqual(directive(fallback[0]!, 'return'), [m[0].slice('return '.length, -1)], 'its only answer');
    const v6 = serverBlocks(renderNginxConf({ ...options, ipv6: true }), 8080).filter((b) => directive(b, 'server_name').length === 0);
    assert.deepEqual(directive(v6[0]!, 'listen'), ['8080 default_server', '[::]:8080 default_server']);
  });

  it('writes the public HTTPS port into the redirect when it is not 443', () => {
    const moved = serverBlocks(renderNginxConf({ ...options, publicHttpsPort: 8443 }), 8080).filter((b) => directive(b, 'server_name').length > 0);
    assert.deepEqual(
      moved.map((b) => directive(b, 'return')[0]),
      ['308 https://api.example.com:8443$request_uri', '308 https://192.0.2.10:8443$request_uri', '308 https://[2001:db8::10]:8443$request_uri'],
    );
  });

  it('refuses to render a server name that is not a DNS name or an IP address', () => {
    for (const bad of ['*.example.com', 'evil.example; return 200', 'a b', 'fe80::1%eth0', '-x.example', '']) {
      assert.equal(isServerName(bad), false, bad);
      assert.throws(() => renderNginxConf({ ...options, serverNames: ['localhost', bad] }), TypeError, bad);
    }
    assert.throws(() => renderNginxConf({ ...options, serverNames: [] }), TypeError);
    for (const good of ['localhost', 'gateway', 'api.example.com', 'xn--bcher-kva.example', '127.0.0.1', '::1', '2001:db8::10']) assert.equal(isServerName(good), true, good);
  });

  it('serves TLS 1.2+ only with the given certificate, and HSTS', () => {
    const https = serverBlock(conf, 8443);
    assert.deepEqual(directive(https, 'listen'), ['8443 ssl']);
    assert.deepEqual(directive(https, 'ssl_certificate'), ['/run/secrets/tls.crt']);
    assert.deepEqual(directive(https, 'ssl_certificate_key'), ['/run/secrets/tls.key']);
    assert.deepEqual(directive(https, 'ssl_protocols'), ['TLSv1.2 TLSv1.3']);
    assert.match(https, /add_header Strict-Transport-Security "max-age=\d+" always;/);
  });

  it('replaces every error nginx makes itself with a JSON body of the app\'s shape', () => {
    const https = serverBlock(conf, 8443);
    const pages = directive(https, 'error_page');
    const statuses = [400, 404, 405, 408, 413, 414, 429, 494, 500, 502, 503, 504];
    // 500 and 504 with `=`: their page's return decides the status (the test below says why).
    assert.deepEqual(pages.sort(), statuses.map((s) => `${s} ${s === 500 || s === 504 ? '= ' : ''}/_nonstop_error/${s}`).sort());
    const expectedCodes: Record<number, string> = {
      400: 'bad_request',
      404: 'not_found',
      405: 'method_not_allowed',
      408: 'request_timeout',
      413: 'body_too_large',
      414: 'uri_too_long',
      429: 'rate_limited',
      494: 'headers_too_large',
      500: 'internal',
      502: 'unavailable',
      503: 'unavailable',
      504: 'deadline_exceeded',
    };
    for (const status of statuses) {
      const loc = locationBlock(https, `= /_nonstop_error/${status}`);
      assert.match(loc, /^\s*internal;$/m, `${status} page is internal`);
      assert.deepEqual(directive(loc, 'default_type'), ['application/json']);
      // The page's own answer is its last return; 500 and 504 have one before it, below.
      const returns = [...loc.matchAll(/return (\d+) '(.*)';/g)];
      assert.equal(returns.length, status === 500 || status === 504 ? 2 : 1, `${status} returns`);
      const m = returns.at(-1);
      assert.ok(m, `${status} returns a body`);
      // 494 is nginx-internal: the client sees 400.
      assert.equal(Number(m[1]), status === 494 ? 400 : status);
      const body = JSON.parse(m[2]!) as { error: { code: string; message: string } };
      assert.deepEqual(Object.keys(body), ['error']);
      assert.equal(typeof body.error.message, 'string');
      assert.equal(body.error.code, expectedCodes[status], `${status} code`);
      assert.ok(SHARED_CODES.has(body.error.code), `${body.error.code} is in ErrorCodes`);
    }
  });

  it('answers 500 and 504 for a request that never got a connection to the app as 503 overloaded with Retry-After: known not stored', () => {
    const https = serverBlock(conf, 8443);
    for (const status of [500, 504]) {
      const loc = locationBlock(https, `= /_nonstop_error/${status}`);
      const m = /\n\s*if \(\$upstream_connect_time = "-"\) \{\n\s*add_header Retry-After 1 always;\n\s*return 503 '(.*)';\n\s*\}\n/.exec(loc);
      assert.ok(m, `${status}: ${loc}`);
      assert.deepEqual(JSON.parse(m[1]!), { error: { code: 'overloaded', message: 'the gateway could not pass the request on; retry later', stored: 'no' } });
      // Before the page's own answer, which still stands for every other cause.
      assert.ok(loc.indexOf('if (') < loc.lastIndexOf(`return ${status} `));
    }
    for (const status of [400, 408, 413, 429, 502, 503]) {
      assert.doesNotMatch(locationBlock(https, `= /_nonstop_error/${status}`), /upstream_connect_time/, String(status));
    }
  });

  it('listens on IPv6 only when ipv6 is true', () => {
    assert.doesNotMatch(conf, /listen \[::\]/);
    const v6 = renderNginxConf({ ...options, ipv6: true });
    for (const block of serverBlocks(v6, 8080)) assert.deepEqual(directive(block, 'listen').map((l) => l.replace(' default_server', '')), ['8080', '[::]:8080']);
    assert.deepEqual(directive(serverBlock(v6, 8443), 'listen'), ['8443 ssl', '[::]:8443 ssl']);
  });

  it('logs access lines as JSON without query strings or bodies', () => {
    const format = /log_format json escape=json '(.*)';/.exec(conf);
    assert.ok(format);
    assert.doesNotMatch(format[1]!, /\$request_uri|\$args|\$query_string|\$request_body|\$request\b/);
    assert.match(format[1]!, /"uri":"\$uri"/);
    // With every variable replaced by a sample value, the line is JSON.
    const sample = format[1]!.replace(/\$[a-z_0-9]+/g, (v) => (/(status|bytes_sent|request_time)$/.test(v) ? '1' : 'x'));
    assert.equal((JSON.parse(sample) as { component: string }).component, 'nginx');
  });
});
