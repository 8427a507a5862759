#!/usr/bin/env node
// Runs inside a probe container: a burst of concurrent large POSTs, each on its own TLS
// connection, all started at one agreed moment (probes share the host's clock), for the
// overload test. Bodies are written in chunks with backpressure and the writing stops as soon
// as an answer arrives, as a well-behaved client would. Each request carries its own
// Idempotency-Key, so a connection cut without an answer is simply tried again, as the API
// allows (counted apart: cut before the TLS handshake finished, when nothing of the request
// had been sent, or after).
//
// usage: burst.js '<JSON options>'
//   host, port, servername, ca   where to connect; ca is the PEM text to trust
//   path, token, tag             POST path, bearer token, title prefix (unique per probe)
//   count                        requests, all in flight at once
//   chunks, chunkChars           body: {"title": "<tag> <i>", "chunks": [chunks × chunkChars "a"]}
//   startAt                      epoch ms at which every request starts
//   timeoutMs, retries           per request; how often a request cut without an answer is re-sent
// Prints one JSON line: {bodyBytes, results: [[status, code, startMs, endMs, cutBeforeHandshake,
// cutAfterHandshake, retryAfter, message, queued], ...]} with times relative to startAt; status
// 0 = no answer after every retry (code is then the last error); queued = the answer carries
// the X-Request-Id the gateway app sets when it queues a request.
'use strict';
const https = require('node:https');
const { Buffer } = require('node:buffer');

const o = JSON.parse(process.argv[2]);
const WRITE_BYTES = 64 * 1024;
const shared = Buffer.from(`,"chunks":[${Array.from({ length: o.chunks }, () => `"${'a'.repeat(o.chunkChars)}"`).join(',')}]}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function attempt(i) {
  return new Promise((resolve) => {
    const prefix = Buffer.from(`{"title":${JSON.stringify(`${o.tag} ${i}`)}`);
    const length = prefix.length + shared.length;
    let secured = false;
    let answered = false;
    const req = https.request({
      host: o.host,
      port: o.port,
      servername: o.servername,
      ca: o.ca,
      agent: false,
      method: 'POST',
      path: o.path,
      timeout: o.timeoutMs,
      headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json', 'content-length': String(length), 'idempotency-key': `${o.tag}-${i}` },
    });
    req.on('socket', (s) => s.once('secureConnect', () => (secured = true)));
    req.on('response', (res) => {
      answered = true;
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        let code = null;
        let message = null;
        try {
          const error = JSON.parse(Buffer.concat(parts).toString('utf8')).error;
          code = error?.code ?? null;
          message = error?.message ?? null;
        } catch {
          code = 'not-json';
        }
        resolve({ status: res.statusCode, code, retryAfter: res.headers['retry-after'] ?? null, message, queued: res.headers['x-request-id'] !== undefined });
        req.destroy();
      });
      res.on('error', () => resolve({ status: res.statusCode, code: 'cut-answer', retryAfter: null }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      if (!answered) resolve({ status: 0, code: err.code ?? err.message, secured });
    });
    // The body: a prefix of its own, then the shared part, written only as the socket takes it.
    let off = 0;
    const pump = () => {
      while (!answered && !req.destroyed && off < length) {
        const piece = off < prefix.length ? prefix : shared.subarray(off - prefix.length, Math.min(off - prefix.length + WRITE_BYTES, shared.length));
        off += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      if (!answered && !req.destroyed) req.end();
    };
    pump();
  });
}

async function one(i) {
  const start = Date.now();
  const cut = [0, 0];
  for (;;) {
    const r = await attempt(i);
    if (r.status === 0 && cut[0] + cut[1] < o.retries) {
      cut[r.secured ? 1 : 0]++;
      await sleep(100 + Math.floor(Math.random() * 400));
      continue;
    }
    return [r.status, r.code, start - o.startAt, Date.now() - o.startAt, cut[0], cut[1], r.retryAfter ?? null, r.message ?? null, r.queued === true];
  }
}

(async () => {
  await sleep(Math.max(0, o.startAt - Date.now()));
  const results = await Promise.all(Array.from({ length: o.count }, (_, i) => one(i)));
  process.stdout.write(JSON.stringify({ bodyBytes: Buffer.byteLength(`{"title":${JSON.stringify(`${o.tag} 0`)}`) + shared.length, results }) + '\n');
})();
