#!/usr/bin/env node
// Runs inside a probe container: an HTTPS load generator for the chain and recovery
// benchmarks. Plain Node (node:https with a keep-alive Agent) rather than autocannon,
// so the probe image needs no npm install and both sides of every comparison (through
// the gateway, straight to core) are driven by exactly the same client code.
//
// usage: load.js '<JSON options>'
//   host, port, servername      where to connect (TLS SNI/verification name)
//   ca, cert, key               PEM file paths (cert/key: a client certificate, optional)
//   method, path, token         POST bodies are {"title":"bench <n>"}, unique per request
//   requestId                   true: send a fresh UUID as X-Request-Id (core requires it)
//   concurrency                 closed loop: that many request loops (and sockets);
//                               open loop: the most sockets the agent opens
//   rate                        requests/s; present = open loop (requests start on a
//                               schedule, latency counted from the scheduled start)
//   seconds, warmupSeconds      measured run, preceded by a discarded warm-up
//   timeoutMs, keepAlive        per request; keepAlive false = a new connection each time
//   timeline                    true: also return [start, end, status] per request (epoch ms)
//   stopWhenRecovered           n: stop once, after a failure, n answers in a row succeed
// Prints one JSON line: counts, statuses, achieved rate and latency quantiles (ms).
'use strict';
const https = require('node:https');
const fs = require('node:fs');
const { randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { Buffer } = require('node:buffer');

const o = JSON.parse(process.argv[2]);
const expected = o.method === 'POST' ? 201 : 200;
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

function send() {
  return new Promise((resolve) => {
    const headers = { authorization: `Bearer ${o.token}` };
    let body;
    if (o.method === 'POST') {
      body = JSON.stringify({ title: `bench ${process.pid}-${seq++}` });
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    if (o.requestId) headers['x-request-id'] = randomUUID();
    const req = https.request({ agent, host: o.host, port: o.port, servername: o.servername, method: o.method, path: o.path, headers, timeout: o.timeoutMs ?? 30_000 }, (res) => {
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

/** Collects one run: latencies of good answers, status counts, optional timeline. */
function collector() {
  const c = { latencies: [], statuses: {}, timeline: [], ok: 0, done: 0, okInWindow: 0, start: now(), end: 0, failedOnce: false, okStreak: 0 };
  c.record = (started, ended, status) => {
    c.done++;
    c.statuses[status] = (c.statuses[status] ?? 0) + 1;
    const good = status === expected;
    if (good) {
      c.ok++;
      c.latencies.push(ended - started);
      c.okStreak++;
    } else {
      c.failedOnce = true;
      c.okStreak = 0;
    }
    if (good && ended <= c.end) c.okInWindow++;
    if (o.timeline) c.timeline.push([Math.round(epoch(started) * 10) / 10, Math.round(epoch(ended) * 10) / 10, status]);
  };
  c.recovered = () => o.stopWhenRecovered !== undefined && c.failedOnce && c.okStreak >= o.stopWhenRecovered;
  return c;
}

async function closedLoop(seconds) {
  const c = collector();
  c.end = c.start + seconds * 1000;
  const loop = async () => {
    while (now() < c.end && !c.recovered()) {
      const t = now();
      const status = await send();
      c.record(t, now(), status);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 32 }, loop));
  return c;
}

async function openLoop(seconds) {
  const c = collector();
  c.end = c.start + seconds * 1000;
  const interval = 1000 / o.rate;
  const inflight = new Set();
  let i = 0;
  for (;;) {
    const t = now();
    if (t >= c.end || c.recovered()) break;
    // Everything whose time has come starts now; latency counts from the scheduled time.
    while (c.start + i * interval <= t && c.start + i * interval < c.end) {
      const scheduled = c.start + i * interval;
      i++;
      const p = send().then((status) => {
        c.record(scheduled, now(), status);
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await sleep(1);
  }
  await Promise.all(inflight);
  return c;
}

function quantile(xs, q) {
  if (xs.length === 0) return null;
  const pos = (xs.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo);
}

function summary(c, seconds) {
  const xs = c.latencies.sort((a, b) => a - b);
  const q = (p) => (xs.length ? Math.round(quantile(xs, p) * 1000) / 1000 : null);
  return {
    seconds,
    sent: c.done,
    ok: c.ok,
    statuses: c.statuses,
    okPerSecond: Math.round((c.okInWindow / seconds) * 10) / 10,
    latencyMs: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1), mean: xs.length ? Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 1000) / 1000 : null },
    ...(o.timeline ? { timeline: c.timeline } : {}),
  };
}

(async () => {
  const run = o.rate ? openLoop : closedLoop;
  if (o.warmupSeconds) await run(o.warmupSeconds);
  const c = await run(o.seconds);
  process.stdout.write(JSON.stringify(summary(c, o.seconds)) + '\n');
  agent.destroy();
})();
