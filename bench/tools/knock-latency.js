#!/usr/bin/env node
// Runs inside a probe container. Measures, per round, the time from the last knock SYN
// to the first TCP connection the target's SSH port accepts: connection attempts start
// every STEP ms after the knock; the first that succeeds tells when the window opened.
// Also measures the plain TCP connect time to an open port (the network floor).
// usage: knock-latency.js HOST PORTS SSH_PORT OPEN_PORT ROUNDS [GAP_MS]
'use strict';
const net = require('node:net');

const [host, portList, sshPort, openPort, rounds, gap] = process.argv.slice(2);
const ports = portList.split(',').map(Number);
const STEP_MS = 1;
const GIVE_UP_MS = 3000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6;

function connectTime(port) {
  return new Promise((resolve) => {
    const t = now();
    const s = net.connect({ host, port: Number(port) });
    s.on('connect', () => { resolve(now() - t); s.destroy(); });
    s.on('error', () => resolve(NaN));
  });
}

async function knock() {
  for (const p of ports) {
    const s = net.connect({ host, port: p });
    s.on('error', () => {});
    await sleep(Number(gap ?? 10));
    s.destroy();
  }
  return now();
}

function firstAccept(t0) {
  return new Promise((resolve) => {
    const sockets = [];
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      for (const s of sockets) s.destroy();
      resolve(v);
    };
    const timer = setInterval(() => {
      const started = now();
      if (started - t0 > GIVE_UP_MS) return finish(NaN);
      const s = net.connect({ host, port: Number(sshPort) });
      sockets.push(s);
      s.on('connect', () => finish(started - t0));
      s.on('error', () => {});
    }, STEP_MS);
  });
}

(async () => {
  const open = [];
  const floor = [];
  for (let i = 0; i < Number(rounds); i++) {
    floor.push(await connectTime(openPort));
    const t0 = await knock();
    open.push(await firstAccept(t0));
    await sleep(200);
  }
  process.stdout.write(JSON.stringify({ open, floor }) + '\n');
})();
