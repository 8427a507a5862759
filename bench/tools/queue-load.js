// Closed-loop load on one gateway's queue, as a gateway puts it there: XADD a GET envelope to
// its stream, wait for the reply published on its channel. Runs in its own process so that
// the broker side's CPU can be measured alone (bench/queue-answer.ts).
//   node queue-load.js <redis port> <username> <password> <gateway id> <concurrency> <seconds>
'use strict';
const { randomUUID } = require('node:crypto');
const { Redis } = require('ioredis');

const [port, username, password, gw, concurrency, seconds] = process.argv.slice(2);
const opts = { host: '127.0.0.1', port: Number(port), username, password, enableReadyCheck: false, disableClientInfo: true, enableAutoPipelining: true, lazyConnect: true, maxRetriesPerRequest: 0 };

(async () => {
  const cmd = new Redis(opts);
  const sub = new Redis(opts);
  await cmd.connect();
  await sub.connect();
  const waiting = new Map();
  sub.on('message', (_channel, text) => {
    const id = JSON.parse(text).id;
    const done = waiting.get(id);
    waiting.delete(id);
    if (done) done();
  });
  await sub.subscribe(`nonstop:v2:gw:${gw}:replies`);
  let ok = 0;
  const end = Date.now() + Number(seconds) * 1000;
  const loop = async () => {
    while (Date.now() < end) {
      const id = randomUUID();
      const got = new Promise((resolve) => waiting.set(id, resolve));
      const envelope = { v: 2, id, gw, budgetMs: 10000, method: 'GET', collection: 'notes', recordId: randomUUID(), token: 'nst_bench' };
      await cmd.xadd(`nonstop:v2:gw:${gw}:req`, '*', 'e', JSON.stringify(envelope));
      await got;
      ok++;
    }
  };
  await Promise.all(Array.from({ length: Number(concurrency) }, loop));
  process.stdout.write(JSON.stringify({ ok }) + '\n');
  cmd.disconnect();
  sub.disconnect();
})().catch((err) => {
  process.stderr.write(String(err.stack ?? err) + '\n');
  process.exit(1);
});
