#!/usr/bin/env node
// Runs inside a probe container: the slow-body attacker of the slow-bodies security test.
// Each of `count` TLS connections sends a POST's headers with a large Content-Length and the
// first `prefixBytes` of its body at once (what a server that gathers bodies must hold), then
// the rest a few bytes at a time, each write well inside nginx's client_body_timeout so no
// read timer ever fires. It keeps writing after an answer, as an attacker that wants the
// connection held would, and records when the answer came and when the gateway closed the
// connection. Connections still open when the watch ends are closed by the tool and
// reported as open (closedMs null).
//
// usage: trickle.js '<JSON options>'
//   host, port, servername, ca   where to connect; ca is the PEM text to trust
//   path, token, tag             POST path, bearer token, title prefix (unique per probe)
//   count                        connections, all opened at startAt
//   contentLength                the body length every request announces
//   prefixBytes                  how much of the body is sent at once, before the trickle
//   pieceBytes, intervalMs       each connection writes pieceBytes of its body every intervalMs
//   startAt                      epoch ms at which every connection opens
//   watchMs                      how long after startAt connections are watched
// Prints one JSON line: {results: [[status, code, stored, sentMs, answeredMs, closedMs,
// bodyBytesSent], ...]}, times in ms from startAt: sentMs when the headers were written
// (null: the TLS handshake never finished), answeredMs when the status line arrived,
// closedMs when the gateway closed the connection (null: still open when the watch ended;
// status 0 and code null: no answer).
'use strict';
const tls = require('node:tls');
const { Buffer } = require('node:buffer');
const { clearTimeout } = require('node:timers');

const o = JSON.parse(process.argv[2]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now() - o.startAt;
// One buffer for every connection's prefix: the tool's own memory stays small.
const fill = Buffer.alloc(o.prefixBytes, 'a');

function connection(i) {
  return new Promise((resolve) => {
    const r = { status: 0, code: null, stored: null, sentMs: null, answeredMs: null, closedMs: null, sent: 0 };
    let received = '';
    let timer;
    let watchEnded = false;
    const head = `{"title":${JSON.stringify(`${o.tag} ${i}`)},"pad":"`;
    const socket = tls.connect({ host: o.host, port: o.port, servername: o.servername, ca: o.ca });
    const finish = () => {
      clearInterval(timer);
      clearTimeout(watch);
      resolve([r.status, r.code, r.stored, r.sentMs, r.answeredMs, r.closedMs, r.sent]);
    };
    const watch = setTimeout(() => {
      watchEnded = true;
      socket.destroy();
    }, Math.max(0, o.watchMs - now()));
    socket.once('secureConnect', () => {
      socket.write(
        `POST ${o.path} HTTP/1.1\r\nHost: ${o.servername}\r\nAuthorization: Bearer ${o.token}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${o.contentLength}\r\nIdempotency-Key: ${o.tag}-${i}\r\n\r\n${head}`,
      );
      r.sentMs = now();
      const prefix = fill.subarray(0, Math.max(0, Math.min(o.prefixBytes, o.contentLength - o.pieceBytes) - Buffer.byteLength(head)));
      r.sent = Buffer.byteLength(head) + prefix.length;
      socket.write(prefix);
      const piece = 'a'.repeat(o.pieceBytes);
      timer = setInterval(() => {
        // Never the whole body: the last bytes are what a slow client keeps the server waiting for.
        if (r.sent + o.pieceBytes < o.contentLength && !socket.destroyed) {
          socket.write(piece);
          r.sent += o.pieceBytes;
        }
      }, o.intervalMs);
    });
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (r.answeredMs === null && /^HTTP\/1\.1 \d{3}/.test(received)) {
        r.answeredMs = now();
        r.status = Number(received.slice(9, 12));
      }
      r.code ??= /"code":"([a-z_]+)"/.exec(received)?.[1] ?? null;
      r.stored ??= /"stored":"([a-z]+)"/.exec(received)?.[1] ?? null;
    });
    socket.on('error', () => undefined); // a reset is a close like any other here
    socket.on('close', () => {
      if (!watchEnded) r.closedMs = now();
      finish();
    });
  });
}

(async () => {
  await sleep(Math.max(0, o.startAt - Date.now()));
  const results = await Promise.all(Array.from({ length: o.count }, (_, i) => connection(i)));
  process.stdout.write(JSON.stringify({ results }) + '\n');
})();
