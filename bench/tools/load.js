#!/usr/bin/env node
// Runs inside a probe container: an HTTPS load generator for the chain, recovery and
// footprint benchmarks. Plain Node (node:https with a keep-alive Agent) rather than
// autocannon, so the probe image needs no npm install and every side of a comparison
// (the chain, straight to core, the nginx baselines) is driven by exactly the same code.
//
// usage: load.js '<JSON options>'
//   host, port, servername      where to connect (TLS SNI/verification name)
//   ca, cert, key               PEM file paths (cert/key: a client certificate, optional)
//   method, path, token         POST bodies are {"title":"bench <n>"}, unique per request
//   bodyBytes                   POST bodies of exactly this many bytes: the title, then
//                               "pad": strings of at most 60,000 characters (under every
//                               tier's string limit) filling the rest
//   requestId                   true: send a fresh UUID as X-Request-Id (core requires it)
//   concurrency                 closed loop: that many request loops (and sockets);
//                               open loop: the most sockets the agent opens
//   rate                        requests/s; present = open loop (requests start on a
//                               schedule, latency counted from the scheduled start)
//   seconds                     length of the measured window
//   windowStart                 epoch ms the measured window starts (the caller reads CPU
//                               counters at both edges); load runs from launch and is warm-up
//                               until then. Absent: launch + warmupSeconds
//   warmupSeconds, minWarmupSeconds   with windowStart: launched with less warm-up left than
//                               minWarmupSeconds, print {"late": ms} and exit 3 (the caller retries)
//   timeoutMs, keepAlive        per request; keepAlive false = a new connection each time
//   timeline                    true: also return [start, end, status] per request (epoch ms)
//   stopWhenRecovered           n: stop once, after a failure, n answers in a row succeed
// Prints one JSON line about the requests of the window: status counts, the latency of
// each expected answer (okMs, unsorted) and how many failed (the caller counts those at
// timeoutMs), plus answers completed inside the window per second. The requests of the
// window are those that started inside it, and those that started during the warm-up and
// failed inside it or after it: a path that stops answering leaves every loop waiting on a
// warm-up request through the whole window, which must read as failures, not as no errors.
'use strict';
const https = require('node:https');
const fs = require('node:fs');
const { randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { Buffer } = require('node:buffer');

const o = JSON.parse(process.argv[2]);
const expected = o.method === 'POST' ? 201 : 200;
const timeoutMs = o.timeoutMs ?? 30_000;
const agent = new https.Agent({
  keepAlive: o.keepAlive !== false,
  maxSockets: o.concurrency ?? 32,
  ca: fs.readFileSync(o.ca),
  ...(o.cert ? { cert: fs.readFileSync(o.cert), key: fs.readFileSync(o.key) } : {}),
});
const now = () => performance.now();
const epoch = (t) => performance.timeOrigin + t;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;

const PAD_CHUNK = 60_000;
const chunk = 'x'.repeat(PAD_CHUNK);

/** {"title":…} padded to `size` bytes with {"pad":["xx…",…]}; unpadded when it is already that long. */
function postBody(size) {
  const plain = JSON.stringify({ title: `bench ${process.pid}-${seq++}` });
  // plain without its "}", then ,"pad":[ and ]} around k strings: k·2 quotes and k−1 commas.
  const rest = (size ?? 0) - (plain.length - 1 + 8 + 2);
  if (rest < 2) return plain;
  const k = Math.ceil((rest + 1) / (PAD_CHUNK + 3));
  let left = rest - 3 * k + 1;
  const pad = [];
  while (pad.length < k) {
    const n = Math.min(PAD_CHUNK, left);
    pad.push(n === PAD_CHUNK ? chunk : chunk.slice(0, n));
    left -= n;
  }
  return `${plain.slice(0, -1)},"pad":[${pad.map((p) => `"${p}"`).join(',')}]}`;
}

function send() {
  return new Promise((resolve) => {
    const headers = { authorization: `Bearer ${o.token}` };
    let body;
    if (o.method === 'POST') {
      body = postBody(o.bodyBytes);
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    if (o.requestId) headers['x-request-id'] = randomUUID();
    const req = https.request({ agent, host: o.host, port: o.port, servername: o.servername, method: o.method, path: o.path, headers, timeout: timeoutMs }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
      res.on('aborted', () => resolve(0));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

// The measured window in this process's clock: [t0, t1).
const launched = now();
const t0 = o.windowStart !== undefined ? o.windowStart - performance.timeOrigin : launched + (o.warmupSeconds ?? 0) * 1000;
const t1 = t0 + o.seconds * 1000;
if (o.windowStart !== undefined && t0 - launched < (o.minWarmupSeconds ?? 0) * 1000) {
  process.stdout.write(JSON.stringify({ late: Math.round(launched - (t0 - (o.minWarmupSeconds ?? 0) * 1000)) }) + '\n');
  process.exit(3);
}

/** The window's requests (see the top): statuses, latencies of expected answers, timeline. */
const c = { okMs: [], statuses: {}, timeline: [], sent: 0, failed: 0, okInWindow: 0, failedOnce: false, okStreak: 0 };
function record(started, ended, status) {
  const good = status === expected;
  if (good) c.okStreak++;
  else {
    c.failedOnce = true;
    c.okStreak = 0;
  }
  // Throughput counts answers completed inside the window, whenever they started.
  if (good && ended >= t0 && ended < t1) c.okInWindow++;
  if (started < t0 && (good || ended < t0)) return;
  c.sent++;
  c.statuses[status] = (c.statuses[status] ?? 0) + 1;
  if (good) c.okMs.push(Math.round((ended - started) * 1000) / 1000);
  else c.failed++;
  if (o.timeline) c.timeline.push([Math.round(epoch(started) * 10) / 10, Math.round(epoch(ended) * 10) / 10, status]);
}
const recovered = () => o.stopWhenRecovered !== undefined && c.failedOnce && c.okStreak >= o.stopWhenRecovered;

async function closedLoop() {
  const loop = async () => {
    while (now() < t1 && !recovered()) {
      const t = now();
      const status = await send();
      record(t, now(), status);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 32 }, loop));
}

async function openLoop() {
  const interval = 1000 / o.rate;
  const inflight = new Set();
  let i = 0;
  for (;;) {
    const t = now();
    if (t >= t1 || recovered()) break;
    // Everything whose time has come starts now; latency counts from the scheduled time.
    while (launched + i * interval <= t && launched + i * interval < t1) {
      const scheduled = launched + i * interval;
      i++;
      const p = send().then((status) => {
        record(scheduled, now(), status);
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await sleep(1);
  }
  await Promise.all(inflight);
}

(async () => {
  await (o.rate ? openLoop() : closedLoop());
  process.stdout.write(
    JSON.stringify({
      seconds: o.seconds,
      warmupSeconds: Math.round(t0 - launched) / 1000,
      windowStart: Math.round(epoch(t0) * 1000) / 1000,
      windowEnd: Math.round(epoch(t1) * 1000) / 1000,
      sent: c.sent,
      ok: c.okMs.length,
      failed: c.failed,
      statuses: c.statuses,
      okPerSecond: Math.round((c.okInWindow / o.seconds) * 10) / 10,
      timeoutMs,
      okMs: c.okMs,
      ...(o.timeline ? { timeline: c.timeline } : {}),
    }) + '\n',
  );
  agent.destroy();
})();
