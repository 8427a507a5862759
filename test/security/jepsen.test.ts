import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createToken } from '../support/stack/api-client';
import { REPO_ROOT } from '../support/stack/build';
import type { ComposeSpec, ServiceSpec } from '../support/stack/compose-config';
import { queryCore } from '../support/stack/core-db';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { FlakeyDisk } from '../support/flakey-disk';
import { freePort } from '../support/ports';
import { tempDir } from '../support/tmp';
import { waitFor } from '../support/wait';
import { check, formatSummary } from './jepsen/checker';
import { Clients, type Endpoint } from './jepsen/clients';
import { canonicalJson, type History, type StoredDoc } from './jepsen/history';
import { DeathWatch, Nemesis, NemesisError, requireHostTools, type ClockControl } from './jepsen/nemesis';

/**
 * A Jepsen-style test of the whole chain's promises (issue 12): concurrent clients, half
 * with an Idempotency-Key and half without, write unique payloads through the gateway's
 * published HTTPS port while a nemesis overlaps faults on every tier; then a checker reads
 * core's database directly and judges what the clients were told against what is stored.
 *
 * The stack is compose.yaml's, adjusted for the faults: a second broker with the same keys
 * (whose wall clock libfaketime can move), core's data directory on a disk that can lose
 * power (test/support/flakey-disk.ts), a `blobs` collection whose schema admits ~1 MiB
 * bodies, and the gateway's HTTPS port fixed so clients reach it again after a restart.
 *
 * Short by default (one round of five overlapping phases, ~3 min of faults on a busy
 * 2-core machine); NONSTOP_JEPSEN_LONG=1 runs three rounds with more clients, a bigger
 * burst and the brokers' default queue size.
 */
const LONG = process.env.NONSTOP_JEPSEN_LONG === '1';
const CFG = LONG
  ? { rounds: 3, clients: 16, paceMs: 30, retries: 3, burst: 160, maxmemory: undefined, calmMs: 5000 }
  : // 16 MiB per broker: two queues are full with ~40 of the burst's ~0.9 MB bodies.
    { rounds: 1, clients: 8, paceMs: 60, retries: 3, burst: 48, maxmemory: 16 << 20, calmMs: 3000 };
const LIVENESS_MS = 5000;
const CANARY_PREFIX = 'jep-';
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const DATA_DIR = '/var/lib/nonstop/data';
const SCHEMA_DIR = '/etc/nonstop/schemas';

/** ~0.9 MB: 14 strings of 64,000 characters, under the JSON limits' 65,536 per string and nginx's 1 MiB. */
const bigBody = (canary: string): Record<string, unknown> => ({ title: canary, chunks: Array.from({ length: 14 }, (_, i) => `${i}`.padEnd(64_000, String.fromCharCode(97 + (i % 26)))) });

const BLOBS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'A large record (the Jepsen test fills the queue with these)',
  type: 'object',
  properties: { title: { type: 'string', minLength: 1, maxLength: 200 }, chunks: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 65_536 } } },
  required: ['title'],
  additionalProperties: false,
};

/** What core holds for this run's canaries, with each document's content hashed next to the database. */
function storedDocs(stack: Stack): Promise<StoredDoc[]> {
  return queryCore<StoredDoc[]>(stack, `(async () => {
    const crypto = require('crypto');
    const canonicalJson = ${canonicalJson.toString()};
    const out = [];
    // Content is encrypted: every record is read and decrypted, then filtered.
    for await (const d of records.find({})) {
      const data = plain(d);
      if (typeof data.title !== 'string' || !data.title.startsWith('${CANARY_PREFIX}')) continue;
      out.push({ id: d._id, collection: d.collection, canary: data.title, contentHash: crypto.createHash('sha256').update(canonicalJson(data), 'utf8').digest('hex') });
    }
    return out;
  })()`);
}

describe('Jepsen-style check: keyed and unkeyed writes through overlapping faults on every tier', function () {
  this.timeout(LONG ? 3_600_000 : 1_200_000);
  let stack: Stack | undefined;
  let disk: FlakeyDisk | undefined;
  let tmp: { dir: string; cleanup: () => void } | undefined;
  let endpoint: Endpoint;
  let token: string;
  let clock: ClockControl;

  before(async () => {
    await requireHostTools();
    if (!existsSync(LIBFAKETIME)) throw new NemesisError(`${LIBFAKETIME} is missing: install Debian's libfaketime (scripts/bootstrap.sh --test does)`);
    tmp = tempDir('nonstop-jepsen-');
    chmodSync(tmp.dir, 0o755);
    // Schemas: the image's own plus `blobs`, mounted over the brokers' schema directory.
    const schemas = join(tmp.dir, 'schemas');
    mkdirSync(schemas, { mode: 0o755 });
    for (const f of readdirSync(join(REPO_ROOT, 'config', 'schemas'))) copyFileSync(join(REPO_ROOT, 'config', 'schemas', f), join(schemas, f));
    writeFileSync(join(schemas, 'blobs.json'), JSON.stringify(BLOBS_SCHEMA));
    // The movable clock: libfaketime in broker2's Node.js process only. redis-server (jemalloc)
    // deadlocks under libfaketime, so the broker's Node.js drops LD_PRELOAD from its own
    // environment before it starts redis-server; the redis clock is the host's.
    const clockDir = join(tmp.dir, 'clock');
    mkdirSync(clockDir, { mode: 0o755 });
    clock = { offsetFile: join(clockDir, 'offset'), service: 'broker2' };
    writeFileSync(clock.offsetFile, '+0s\n');
    writeFileSync(join(clockDir, 'no-preload-for-children.js'), 'delete process.env.LD_PRELOAD;\n');
    for (const d of [schemas, clockDir]) for (const f of readdirSync(d)) chmodSync(join(d, f), 0o644);

    disk = await FlakeyDisk.create({ sizeMiB: 512 });
    const coreData = join(disk.dir, 'core-data');
    mkdirSync(coreData);
    chownSync(coreData, 10001, 10001);
    chmodSync(coreData, 0o700);
    const httpsPort = await freePort();

    stack = await upStack({}, (spec: ComposeSpec) => {
      const gateway = spec.services.gateway!;
      for (const p of gateway.ports) if (p.containerPort === 443) p.hostPort = String(httpsPort);
      const core = spec.services.core!;
      core.volumes = [...core.volumes.filter((v) => v.target !== DATA_DIR), { source: coreData, target: DATA_DIR, readOnly: false, bind: true }];
      const broker = spec.services.broker!;
      broker.volumes.push({ source: schemas, target: SCHEMA_DIR, readOnly: true, bind: true });
      if (CFG.maxmemory !== undefined) broker.environment.REDIS_MAXMEMORY_BYTES = String(CFG.maxmemory);
      const broker2: ServiceSpec = structuredClone(broker);
      broker2.name = 'broker2';
      broker2.volumes.push({ source: LIBFAKETIME, target: '/opt/faketime/libfaketime.so.1', readOnly: true, bind: true }, { source: clockDir, target: '/opt/faketime/clock', readOnly: true, bind: true });
      Object.assign(broker2.environment, {
        LD_PRELOAD: '/opt/faketime/libfaketime.so.1',
        FAKETIME_TIMESTAMP_FILE: '/opt/faketime/clock/offset',
        FAKETIME_CACHE_DURATION: '1',
        // A wall clock that is wrong, not a machine whose every timer runs off.
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
        NODE_OPTIONS: '--require /opt/faketime/clock/no-preload-for-children.js',
      });
      spec.services.broker2 = broker2;
    });
    await stack.waitHealthy('broker2');
    const cert = await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt']);
    assert.equal(cert.exitCode, 0, cert.stderr);
    endpoint = { port: httpsPort, ca: cert.stdout };
    token = await createToken(stack, ['notes', 'blobs']);
  });

  after(async () => {
    await stack?.down();
    await disk?.destroy();
    tmp?.cleanup();
  });

  it('stores every acknowledged write once with its content, no definite failure, no keyed duplicate, and serves within 5 s of every heal', async () => {
    const s = stack!;
    const history: History = { ops: [], faults: [], probes: [], brokers: ['broker', 'broker2'], observations: [] };
    const services = ['core', 'gateway', 'broker', 'broker2'];
    const clients = new Clients({ endpoint, token, history, canaryPrefix: CANARY_PREFIX, timeoutMs: 15_000 });
    const probes: Promise<unknown>[] = [];
    const nemesis = new Nemesis(s, history, (label, at) => probes.push(clients.probe(label, at)));
    const began = Date.now();
    const deaths = await DeathWatch.start(s, services);

    // Both brokers' lanes up and the chain answering before the clock starts.
    await waitFor('the chain', async () => (await clients.probe('start', Date.now(), 2000)).firstOk !== undefined, 120_000, 500);
    history.probes.length = 0;
    clients.start(CFG.clients, CFG.paceMs, CFG.retries);
    await waitFor('the load to get going', () => history.ops.filter((o) => o.attempts.some((a) => a.outcome === 'ok')).length >= 30, 60_000, 200);

    for (let round = 0; round < CFG.rounds; round++) {
      // A: a power cut under core (SIGKILL, unsynced writes lost) overlapped by a gateway crash.
      await Promise.all([nemesis.powerCutCore(disk!), sleep(3000).then(() => nemesis.killContainer('gateway', 'chain'))]);
      await sleep(CFG.calmMs);
      // B: broker2's tunnel blackholed while redis-server dies inside the other broker.
      await Promise.all([nemesis.blackhole('broker2', 8000), sleep(2000).then(() => nemesis.killRedis('broker'))]);
      await sleep(CFG.calmMs);
      // C: broker2's clock a minute fast while the other broker is stopped gracefully: broker2 alone must serve.
      await nemesis.clockOffset(clock, 60, () => nemesis.stopContainer('broker', 'broker:broker', 8000, (at) => probes.push(clients.probe('broker stopped, broker2 at +60 s serving alone', at))));
      await sleep(CFG.calmMs);
      // D: core paused while a burst of ~1 MB writes fills the queues, the other broker's tunnel
      // blackholed and broker2's clock a minute slow: when core is back, broker2's full queue
      // must drain and serve within 5 s.
      await Promise.all([
        nemesis.blackhole('broker', 18_000),
        sleep(500).then(() => nemesis.clockOffset(clock, -60, () => nemesis.pauseCore(12_000, () => clients.burst(CFG.burst, 'blobs', bigBody)))),
      ]);
      await sleep(CFG.calmMs);
      // E: the gateway stopped gracefully while broker2 crashes.
      await Promise.all([nemesis.stopContainer('gateway', 'chain', 3000), sleep(1000).then(() => nemesis.killContainer('broker2', 'broker:broker2'))]);
      await sleep(CFG.calmMs);
    }

    await Promise.all(probes);
    await clients.stop();
    for (const svc of services) await s.waitHealthy(svc, 120_000);
    const settled = await clients.settleKeyed(60_000);
    // Die events arrive a moment after the fact: let the last ones in before counting.
    await sleep(2000);
    history.observations.push(...deaths.stop(nemesis.deaths));
    const faultsMs = Date.now() - began;

    const stored = await storedDocs(s);
    const result = check(history, stored, { livenessMs: LIVENESS_MS, canaryPrefix: CANARY_PREFIX });
    const summary = formatSummary(result, {
      version: LONG ? `long (${CFG.rounds} rounds)` : 'short (1 round; NONSTOP_JEPSEN_LONG=1 for 3)',
      'load and faults': `${(faultsMs / 1000).toFixed(0)} s, ${CFG.clients} clients`,
      'keyed ops retried after the faults': settled,
      'stored documents of this run': stored.length,
      faults: history.faults.map((f) => `\n  ${f.name} (${((f.start - began) / 1000).toFixed(1)} s -> ${f.healed ? `${((f.healed - began) / 1000).toFixed(1)} s` : 'never healed'}): ${f.notes.join('; ')}`).join(''),
    });
    process.stdout.write(`\n${summary}\n`);
    // The run must have exercised what it judges: writes of each kind, and faults that bit.
    assert.ok(result.figures.ok >= 100, `only ${result.figures.ok} writes acknowledged`);
    assert.ok(result.figures.keyedOps > 0 && result.figures.unkeyedOps > 0, 'keyed and unkeyed clients both wrote');
    assert.ok(result.figures.fail + result.figures.info > 0, 'no write failed or went indeterminate: the faults did not bite');
    assert.ok(result.figures.liveness.some((l) => l.judged), 'no heal was judged for liveness');
    const burst = result.figures.answers.burst ?? {};
    assert.ok((burst['503 queue_full'] ?? 0) + (burst['503 overloaded'] ?? 0) > 0, `the burst filled no queue and met no admission limit: ${JSON.stringify(burst)}`);
    assert.ok(result.valid, summary);
  });
});
