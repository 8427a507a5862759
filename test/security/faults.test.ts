import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, createToken } from '../support/stack/api-client';
import type { ComposeSpec } from '../support/stack/compose-config';
import { upStack } from '../support/stack/fixture';
import type { Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';
import { exactlyOnceProblems, storedRecords, WriteLoad, type Attempt } from './support/write-load';

/**
 * Faults under load, from the side of the clients and of the operator: a bounded write
 * load runs from the host through the gateway's published HTTPS port, every logical record
 * carrying its own Idempotency-Key, while a tier is killed, restarted, paused or starved of
 * disk. Afterwards core must hold every acknowledged record exactly once under the id the
 * client was given, nothing twice, and a client's retry of an unacknowledged record (same
 * key) must give it exactly one record. Clients only ever see the documented JSON errors.
 */
const REQUEST_TIMEOUT_MS = 3000;
const DATA_DIR = '/var/lib/nonstop/data';

const statusesOf = (attempts: Attempt[]): Set<number> => new Set(attempts.map((a) => a.status));
const between = (attempts: Attempt[], from: number, to: number): Attempt[] => attempts.filter((a) => a.start >= from && a.end <= to);

/** The JSON error codes the public API documents for each 5xx a fault may cause. */
const CODES: Record<number, string[]> = {
  502: ['outcome_unknown'],
  503: ['no_tunnel', 'unavailable', 'queue_full', 'overloaded', 'shutting_down'],
  504: ['deadline_exceeded'],
  507: ['storage_full'],
};

function assertDocumentedErrors(load: WriteLoad, attempts: Attempt[]): void {
  for (const a of attempts) {
    if (a.status === 201 || a.status === 0) continue;
    assert.ok(CODES[a.status]?.includes(a.code ?? ''), `answer ${a.status} with code ${a.code} is not a documented JSON error: ${JSON.stringify(load.summary())}`);
  }
}

/** The JSON lines of a service's log (non-JSON lines, e.g. from child processes, skipped). */
function jsonLines(log: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the log driver
    }
  }
  return out;
}

async function restartCounts(stack: Stack): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of ['gateway', 'broker', 'core']) out[s] = (await stack.inspect(s)).RestartCount;
  return out;
}

/** Starts a stopped container; a container already running again (restart policy) is fine. */
async function ensureStarted(stack: Stack, service: string): Promise<void> {
  try {
    await stack.container(service).start();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 304) throw err;
  }
}

describe('faults under load', function () {
  this.timeout(600_000);

  describe('on one stack with a 3 s gateway deadline', () => {
    let stack: Stack;
    let api: ApiClient;
    let token: string;

    const load = (prefix: string): WriteLoad =>
      new WriteLoad({ api: () => api, token, collection: 'notes', prefix, writers: 6, paceMs: 40, retries: 2, maxRecords: 5000 });

    /** Retries what was refused, then checks core holds each acknowledged record exactly once. */
    const settle = async (l: WriteLoad, prefix: string): Promise<number> => {
      const retried = await l.retryUnacknowledged(60_000);
      assert.equal(l.acknowledged, l.records.length);
      assert.deepEqual(exactlyOnceProblems(l, await storedRecords(stack, prefix)), []);
      assert.equal((await storedRecords(stack, prefix)).length, l.records.length);
      return retried;
    };

    before(async () => {
      stack = await upStack({}, (spec: ComposeSpec) => {
        spec.services.gateway!.environment.REQUEST_TIMEOUT_MS = String(REQUEST_TIMEOUT_MS);
      });
      api = await ApiClient.forStack(stack);
      token = await createToken(stack, ['notes']);
      await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
    });

    after(async () => {
      await stack?.down();
    });

    it('loses no acknowledged record and stores none twice when the broker is SIGKILLed mid-load and started again', async () => {
      const prefix = 'brokerkill';
      const l = load(prefix);
      l.start();
      let killedAt = 0;
      let backAt = 0;
      try {
        await l.waitForMoreAcks(40, 30_000);
        killedAt = Date.now();
        await stack.container('broker').kill({ signal: 'SIGKILL' });
        await waitFor('clients to see the outage', () => l.attempts().some((a) => a.start > killedAt && a.status === 503), 20_000);
        // Long enough for requests parked at the gateway to miss their deadline.
        await sleep(REQUEST_TIMEOUT_MS + 1500);
        await ensureStarted(stack, 'broker');
        await stack.waitHealthy('broker', 120_000);
        backAt = Date.now();
        await l.waitForMoreAcks(40, 90_000);
      } finally {
        await l.stop();
      }
      const attempts = l.attempts();
      assert.deepEqual([...statusesOf(attempts)].filter((s) => ![201, 503, 504].includes(s)), [], JSON.stringify(l.summary()));
      assertDocumentedErrors(l, attempts);
      const outage = attempts.filter((a) => a.start > killedAt && a.end < backAt);
      assert.ok(outage.some((a) => a.status === 503 && a.code === 'no_tunnel'), JSON.stringify(l.summary(outage)));
      const retried = await settle(l, prefix);
      assert.ok(retried > 0, 'no record was left unacknowledged by the outage');
    });

    it('resumes by itself after the gateway restarts mid-load, with each record stored once', async () => {
      const prefix = 'gwrestart';
      const l = load(prefix);
      const tunnelsBefore = ((await stack.logs('broker')).match(/"message":"tunnel up"/g) ?? []).length;
      l.start();
      let restartedAt = 0;
      try {
        await l.waitForMoreAcks(40, 30_000);
        restartedAt = Date.now();
        await stack.container('gateway').restart();
        await stack.waitHealthy('gateway', 120_000);
        // A restarted container gets new random host ports.
        api = await ApiClient.forStack(stack);
        await l.waitForMoreAcks(40, 90_000);
      } finally {
        await l.stop();
      }
      const attempts = l.attempts();
      const after = attempts.filter((a) => a.start > restartedAt);
      assert.ok(after.some((a) => a.status === 201), 'no request succeeded after the restart');
      // While the gateway is down clients cannot connect at all (0); while it drains and
      // before the broker is back they get documented JSON errors.
      assert.deepEqual([...statusesOf(attempts)].filter((s) => ![0, 201, 503, 504].includes(s)), [], JSON.stringify(l.summary()));
      assertDocumentedErrors(l, attempts);
      const tunnelsAfter = ((await stack.logs('broker')).match(/"message":"tunnel up"/g) ?? []).length;
      assert.ok(tunnelsAfter > tunnelsBefore, 'the broker did not open a new tunnel');
      await settle(l, prefix);
    });

    it('answers 504 deadline_exceeded while core is paused and stores each retried record once after it resumes', async () => {
      const prefix = 'corepause';
      const l = load(prefix);
      l.start();
      let pausedAt = 0;
      let resumedAt = 0;
      try {
        await l.waitForMoreAcks(40, 30_000);
        // The window is taken inside the actual pause: from when it is in force until
        // just before it is lifted.
        await stack.container('core').pause();
        pausedAt = Date.now();
        try {
          await waitFor('a 504 while core is paused', () => l.attempts().some((a) => a.start >= pausedAt && a.status === 504), 20_000);
          // Clients retry (same key) while the first copies still wait at the broker; every
          // writer gets at least one whole attempt inside the pause.
          await sleep(REQUEST_TIMEOUT_MS + 1500);
        } finally {
          resumedAt = Date.now();
          await stack.container('core').unpause();
        }
        await l.waitForMoreAcks(40, 60_000);
      } finally {
        await l.stop();
      }
      const attempts = l.attempts();
      const paused = between(attempts, pausedAt, resumedAt);
      assert.ok(paused.length >= 6, JSON.stringify(l.summary(paused)));
      assert.deepEqual(l.summary(paused), { '504 deadline_exceeded': paused.length });
      assert.deepEqual([...statusesOf(attempts)].filter((s) => ![201, 504].includes(s)), [], JSON.stringify(l.summary()));
      assertDocumentedErrors(l, attempts);
      // Records answered 504 (the first copies of some reached core once it resumed) are
      // sent again with the same key until acknowledged; each must end up stored once.
      assert.ok(l.records.filter((r) => r.attempts.some((a) => a.status === 504)).length >= 6);
      await settle(l, prefix);
    });

    it('survives redis-server crashing inside the broker, even in a loop: restarted in place, requests in flight re-sent and answered 201 or 504', async () => {
      const prefix = 'rediskill';
      const redisPid = async (): Promise<string> => {
        const res = await stack.exec('broker', ['sh', '-c', 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = redis-server ] && echo ${p#/proc/}; done']);
        return res.stdout.trim();
      };
      const redisRestarts = async (): Promise<number> =>
        jsonLines(await stack.logs('broker')).filter((l) => l.message === 'child exited; restarting' && l.child === 'redis' && l.signal === 'SIGKILL').length;
      const killRedis = async (): Promise<number> => {
        const pid = await redisPid();
        assert.match(pid, /^\d+$/);
        const at = Date.now();
        const kill = await stack.exec('broker', ['sh', '-c', `kill -9 ${pid}`]);
        assert.equal(kill.exitCode, 0, kill.stderr);
        await waitFor('a new redis-server', async () => {
          const now = await redisPid();
          return /^\d+$/.test(now) && now !== pid;
        }, 30_000, 200);
        return at;
      };
      const restartsBefore = await restartCounts(stack);
      const redisRestartsBefore = await redisRestarts();
      const l = load(prefix);
      l.start();
      let heldKillAt = 0;
      let gatewayLogBefore = 0;
      try {
        // First a crash loop at whatever moment the load is in (XADDs, replies, reads in
        // flight): each restart comes later (the supervisor backs off), so the gateway's
        // queue connections reconnect through the tunnel while nothing answers behind it.
        await l.waitForMoreAcks(40, 30_000);
        for (let i = 0; i < 3; i++) await killRedis();
        assert.deepEqual(await restartCounts(stack), restartsBefore, 'a container restarted during the crash loop');
        await l.waitForMoreAcks(40, 60_000);
        // Then one with every writer's request surely in flight: core is paused for a
        // moment around the crash, so the requests sit in the queue or at the broker.
        gatewayLogBefore = (await stack.logs('gateway')).length;
        await stack.container('core').pause();
        try {
          await sleep(800);
          heldKillAt = await killRedis();
        } finally {
          await stack.container('core').unpause();
        }
        await l.waitForMoreAcks(40, 60_000);
      } finally {
        await l.stop();
      }
      await stack.waitHealthy('broker', 60_000);
      assert.deepEqual(await restartCounts(stack), restartsBefore);
      assert.equal(await redisRestarts(), redisRestartsBefore + 4);
      const attempts = l.attempts();
      assert.deepEqual([...statusesOf(attempts)].filter((s) => ![201, 503, 504].includes(s)), [], JSON.stringify(l.summary()));
      assertDocumentedErrors(l, attempts);
      // Requests sent well before the held crash and not answered by then were in flight:
      // the gateway sends them again (same request id) once the queue is back, so each is
      // answered 201, or 504 if that took longer than its deadline.
      const inFlight = attempts.filter((a) => a.start < heldKillAt - 300 && a.end > heldKillAt);
      assert.ok(inFlight.length >= 1, 'no request was in flight at the crash');
      assert.deepEqual([...statusesOf(inFlight)].filter((s) => ![201, 504].includes(s)), [], JSON.stringify(l.summary(inFlight)));
      const resent = jsonLines((await stack.logs('gateway')).slice(gatewayLogBefore)).filter((e) => e.message === 'queue lane not ready; requests re-sent');
      assert.ok(resent.some((e) => typeof e.requests === 'number' && e.requests >= 1), JSON.stringify(resent));
      await settle(l, prefix);
    });
  });

  describe("with core's data directory on a small tmpfs", () => {
    let stack: Stack;
    let api: ApiClient;
    let token: string;
    const FILLER = `${DATA_DIR}/filler`;

    before(async () => {
      stack = await upStack({}, (spec: ComposeSpec) => {
        const core = spec.services.core!;
        core.volumes = core.volumes.filter((v) => v.target !== DATA_DIR);
        core.tmpfs[DATA_DIR] = 'uid=10001,gid=10001,mode=0700,size=24m';
      });
      api = await ApiClient.forStack(stack);
      token = await createToken(stack, ['notes']);
      await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
      // Space to give back later, as an operator would by clearing something else on the volume.
      const fill = await stack.exec('core', ['sh', '-c', `head -c ${8 * 1024 * 1024} /dev/urandom > ${FILLER}`], { user: '10001:10001' });
      assert.equal(fill.exitCode, 0, fill.stderr);
    });

    after(async () => {
      await stack?.down();
    });

    it('refuses writes with a JSON 507 or 503 once the disk is full, keeps every acknowledged record intact, and accepts them again when space is freed', async () => {
      const prefix = 'diskfull';
      // ~80 KB of UTF-8 per record: 19,000 four-byte characters are within the schema's
      // 20,000 and the JSON limits' 65,536 UTF-16 units.
      const body = (title: string): Record<string, unknown> => ({
        title,
        body: Array.from({ length: 19_000 }, () => String.fromCodePoint(0x1f300 + randomInt(0x2ff))).join(''),
      });
      const l = new WriteLoad({ api: () => api, token, collection: 'notes', prefix, writers: 4, paceMs: 10, retries: 1, maxRecords: 600, body });
      const restartsBefore = await restartCounts(stack);
      l.start();
      try {
        await waitFor('the disk to fill', () => l.attempts().filter((a) => a.status !== 201).length >= 8, 180_000, 200);
      } finally {
        await l.stop();
      }
      const attempts = l.attempts();
      const refusals = attempts.filter((a) => a.status !== 201);
      assert.ok(l.acknowledged > 20, `only ${l.acknowledged} records fitted`);
      assert.deepEqual([...statusesOf(refusals)].filter((s) => ![503, 507].includes(s)), [], JSON.stringify(l.summary()));
      assertDocumentedErrors(l, attempts);
      assert.ok(refusals.some((a) => a.status === 507), JSON.stringify(l.summary()));

      // Every acknowledged record reads back exactly as written, with the disk still full.
      for (const rec of l.records.filter((r) => r.id !== undefined)) {
        const res = await api.get('notes', rec.id!, token);
        assert.equal(res.status, 200, `${rec.title}: ${res.text.slice(0, 200)}`);
        assert.deepEqual((res.json as { data: unknown }).data, rec.body, rec.title);
      }

      const free = await stack.exec('core', ['rm', FILLER], { user: '10001:10001' });
      assert.equal(free.exitCode, 0, free.stderr);
      const retried = await l.retryUnacknowledged(60_000, 2);
      assert.ok(retried > 0);
      const fresh = await api.post('notes', body(`${prefix}-after`), token, { 'idempotency-key': `key-${prefix}-after` });
      assert.equal(fresh.status, 201, fresh.text.slice(0, 200));
      const stored = (await storedRecords(stack, prefix)).filter(([, title]) => title !== `${prefix}-after`);
      assert.deepEqual(exactlyOnceProblems(l, stored), []);
      assert.equal(stored.length, l.records.length);
      assert.deepEqual(await restartCounts(stack), restartsBefore);
    });
  });
});
