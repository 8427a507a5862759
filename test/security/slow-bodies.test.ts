import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { DEFAULT_BODY_TIMEOUT_MS } from '../../services/gateway/config';
import { ApiClient, createToken, type ApiResponse } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import { CgroupSampler, hostCgroupDir, memoryFigures, MiB, resetPeak, restartState } from '../support/stack/memory';
import { execIn, type Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

/**
 * Slow request bodies at the door (slowloris on the body): 256 TLS connections announce a
 * 1 MiB body each, send all of it but the last KiB at once (what a server that gathers bodies
 * must hold: 256 MiB, the gateway's whole memory), then the rest 4 bytes every 3 s, a third
 * of nginx's client_body_timeout, so no read timer ever fires, and keep writing after any
 * answer. First from one address,
 * then split across two; alongside, from the first, 16 more trickle bodies nginx answers
 * itself (404, 413) and then reads on to throw away. The gateway must cut every one of them
 * off within a bounded total time, not only after a gap; stay under its memory limit with nothing OOM-killed or
 * restarted (Docker's count, and nginx's restarts inside the container); and keep serving:
 * a client at a third address (the host, through the published port) gets its write stored
 * while the attack runs, retrying as the API tells it to (503 overloaded with Retry-After).
 *
 * What happens, as measured: nginx streams each body to the app through its 16k buffer; the
 * app admits the first eight (eight 1 MiB bodies fill MAX_PENDING_BYTES) and refuses the rest
 * from their headers, 503 overloaded, after which nginx closes them. The eight hold the whole
 * body budget until BODY_TIMEOUT_MS ends them with 408 request_timeout (every other write is
 * refused 503 overloaded until then); the gateway peaked at ~100 MiB of 256. Without the
 * deadline the eight were still open when the watch ended and the legitimate write was
 * refused throughout; with nginx gathering bodies in a 1 MiB buffer each (as before it
 * streamed them), nginx alone reached ~200 MiB and was OOM-killed.
 */
const CONNECTIONS = 256;
/** The largest body the gateway takes (MAX_BODY_BYTES' default): nginx passes it on. */
const CONTENT_LENGTH = 1024 * 1024;
/** What each body keeps back, to trickle. */
const HELD_BACK_BYTES = 1024;
const PIECE_BYTES = 4;
/** Under nginx's client_body_timeout (10 s): only a bound on the total time can end these. */
const INTERVAL_MS = 3000;
/**
 * How long each attack is watched from the moment its connections open: the bound every slow
 * connection must be cut within. Three times BODY_TIMEOUT_MS's default, twice nginx's lingering_time.
 */
const WATCH_MS = 3 * DEFAULT_BODY_TIMEOUT_MS;
/** The answers a slow body the app is passed may get, all "known not stored". */
const APP_ANSWERS = ['408 request_timeout', '503 overloaded', '429 rate_limited'];
/**
 * Slow bodies nginx answers itself and never passes on: it reads and throws them away for at
 * most its lingering_time (30 s), however slowly they come. Sent alongside, from the first address.
 */
const NGINX_GROUPS = [
  { name: 'no such endpoint', tag: 'notfound', path: '/v1', contentLength: CONTENT_LENGTH, expect: ['404 not_found'] },
  { name: 'too large', tag: 'toolarge', path: '/v1/records/notes', contentLength: 2 * CONTENT_LENGTH, expect: ['413 body_too_large'] },
];
const NGINX_GROUP_CONNECTIONS = 8;

interface Group {
  name: string;
  probe: Docker.Container;
  tag: string;
  path: string;
  count: number;
  contentLength: number;
}

type Slow = [status: number, code: string | null, stored: string | null, sentMs: number | null, answeredMs: number | null, closedMs: number | null, bodyBytesSent: number];

interface LegitOutcome {
  storedAtMs: number | null;
  id: string | null;
  attempts: Record<string, number>;
}

/** nginx restarts inside the gateway, from the gateway's own health report. */
async function nginxRestarts(stack: Stack): Promise<number> {
  const res = await stack.exec('gateway', ['node', '-e', "fetch('http://127.0.0.1:9464/healthz').then((r) => r.text()).then((t) => console.log(t))"]);
  const n = (JSON.parse(res.stdout) as { checks?: { nginxRestarts?: unknown } }).checks?.nginxRestarts;
  if (typeof n !== 'number') throw new Error(`no nginxRestarts in the gateway's health report: ${res.stdout} ${res.stderr}`);
  return n;
}

describe('slow request bodies at the gateway', function () {
  this.timeout(600_000);

  let stack: Stack;
  let api: ApiClient;
  let token: string;
  let ca: string;
  let gatewayIp: string;
  let probes: Docker.Container[];

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
    const cert = await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt']);
    assert.equal(cert.exitCode, 0, cert.stderr);
    ca = cert.stdout;
    gatewayIp = await stack.ip('gateway', 'edge');
    probes = await Promise.all([0, 1].map(() => stack.probe('edge')));
  });

  after(async () => {
    await stack?.down();
  });

  /**
   * A well-behaved client on the host: one write under one Idempotency-Key, re-sent after
   * Retry-After while the gateway says it is overloaded, until it is stored or `untilMs`.
   */
  async function legitimateWrite(startAt: number, untilMs: number): Promise<LegitOutcome> {
    const key = `legit-${randomUUID()}`;
    const attempts: Record<string, number> = {};
    while (Date.now() - startAt < untilMs) {
      const res = await api.post('notes', { title: key }, token, { 'idempotency-key': key }).catch((err: Error): ApiResponse => ({ status: 0, text: err.message, json: undefined, headers: {} }));
      const code = (res.json as { error?: { code?: string } } | undefined)?.error?.code ?? '';
      attempts[`${res.status} ${code}`] = (attempts[`${res.status} ${code}`] ?? 0) + 1;
      if (res.status === 201) return { storedAtMs: Date.now() - startAt, id: (res.json as { id: string }).id, attempts };
      await sleep(1000 * Number(res.headers['retry-after'] ?? 1));
    }
    return { storedAtMs: null, id: null, attempts };
  }

  for (const addresses of [1, 2]) {
    it(`cuts off ${CONNECTIONS} bodies trickled from ${addresses === 1 ? 'one address' : 'two addresses'}, and bodies nginx refuses itself, within a bounded time, under the memory limit with nothing restarted, while a third address's write is stored`, async () => {
      const perProbe = CONNECTIONS / addresses;
      const groups: Group[] = [
        ...probes.slice(0, addresses).map((probe, p) => ({ name: 'to the app', probe, tag: `slow-${addresses}-${p}`, path: '/v1/records/notes', count: perProbe, contentLength: CONTENT_LENGTH })),
        ...NGINX_GROUPS.map((g) => ({ ...g, probe: probes[0]!, tag: `slow-${addresses}-${g.tag}`, count: NGINX_GROUP_CONNECTIONS })),
      ];
      const before = await restartState(stack, ['gateway']);
      const nginxBefore = await nginxRestarts(stack);
      const dir = await hostCgroupDir(stack, 'gateway');
      const peakOfAttackOnly = resetPeak(dir);
      const memBefore = await memoryFigures(stack, 'gateway');
      const sampler = dir ? new CgroupSampler(dir) : undefined;
      sampler?.start();

      const startAt = Date.now() + 3000;
      const slow: { group: string; result: Slow }[] = [];
      let legit: LegitOutcome;
      let sampled: Record<string, number> | undefined;
      try {
        const attack = Promise.all(
          groups.map((g) => {
            const options = {
              host: gatewayIp,
              port: 443,
              servername: 'gateway',
              ca,
              path: g.path,
              token,
              tag: g.tag,
              count: g.count,
              contentLength: g.contentLength,
              prefixBytes: g.contentLength - HELD_BACK_BYTES,
              pieceBytes: PIECE_BYTES,
              intervalMs: INTERVAL_MS,
              startAt,
              watchMs: WATCH_MS,
            };
            return execIn(stack.docker, g.probe, ['node', '/usr/local/bin/trickle', JSON.stringify(options)], { timeoutMs: WATCH_MS + 60_000 });
          }),
        );
        // The legitimate client starts once every slow connection has had time to open.
        await sleep(startAt + 2 * INTERVAL_MS - Date.now());
        legit = await legitimateWrite(startAt, WATCH_MS);
        (await attack).forEach((out, i) => {
          assert.equal(out.exitCode, 0, out.stderr);
          for (const result of (JSON.parse(out.stdout) as { results: Slow[] }).results) slow.push({ group: groups[i]!.name, result });
        });
      } finally {
        sampled = await sampler?.stop();
      }
      const memAfter = await memoryFigures(stack, 'gateway');
      const after = await restartState(stack, ['gateway']);
      const nginxAfter = await nginxRestarts(stack);

      const outcomes: Record<string, Record<string, number>> = {};
      const heldMs: Record<string, number> = {};
      for (const { group, result } of slow) {
        const [status, code, stored, sentMs, , closedMs] = result;
        const k = `${status} ${code ?? ''} stored:${stored ?? ''} ${closedMs === null ? 'open' : 'closed'}`;
        (outcomes[group] ??= {})[k] = (outcomes[group][k] ?? 0) + 1;
        if (sentMs !== null) heldMs[group] = Math.max(heldMs[group] ?? 0, (closedMs ?? WATCH_MS) - sentMs);
      }
      const figures = {
        connections: slow.length,
        outcomes,
        longestHeldMs: heldMs,
        stillOpenAtEnd: slow.filter(({ result }) => result[5] === null).length,
        legit: { storedAtMs: legit.storedAtMs, attempts: legit.attempts },
        gatewayMemoryMiB: { limit: MiB(memAfter.limit), peak: MiB(memAfter.peak), peakOfAttackOnly, failcnt: memAfter.failcnt - memBefore.failcnt, oomKills: memAfter.oomKills - memBefore.oomKills },
        gatewaySampledPeakMiB: sampled ?? 'not on the engine host',
        restarts: after.gateway!.restarts - before.gateway!.restarts,
        nginxRestarts: nginxAfter - nginxBefore,
      };
      const said = JSON.stringify(figures);
      console.log(`      slow-body figures (${addresses} address${addresses === 1 ? '' : 'es'}): ${said}`);

      assert.equal(slow.length, CONNECTIONS + NGINX_GROUPS.length * NGINX_GROUP_CONNECTIONS);
      // Nothing restarted or OOM-killed, and the gateway never reached its memory limit.
      assert.deepEqual(after, before, said);
      assert.equal(nginxAfter, nginxBefore, `nginx restarted inside the gateway: ${said}`);
      assert.equal(memAfter.oomKills, memBefore.oomKills, `a process in the gateway was OOM-killed: ${said}`);
      assert.ok(memAfter.peak < memAfter.limit, `the gateway reached its memory limit: ${said}`);
      assert.equal(memAfter.failcnt, memBefore.failcnt, `the gateway hit its memory limit: ${said}`);
      // The third address's write was stored while the attack ran, and reads back.
      assert.ok(legit.storedAtMs !== null, `the legitimate write was never stored: ${said}`);
      const read = await api.get('notes', legit.id!, token);
      assert.equal(read.status, 200, read.text);
      // The attack reached the gateway: every connection finished its handshake and sent its headers.
      assert.ok(
        slow.every(({ result }) => result[3] !== null),
        `a slow connection never got its headers out: ${said}`,
      );
      // Every slow connection was cut off by the gateway before the watch ended, each with a
      // documented JSON answer that says it was not stored.
      assert.equal(figures.stillOpenAtEnd, 0, `slow connections still open after ${WATCH_MS} ms: ${said}`);
      for (const { group, result } of slow) {
        const [status, code, stored] = result;
        const allowed = NGINX_GROUPS.find((g) => g.name === group)?.expect ?? APP_ANSWERS;
        assert.ok(allowed.includes(`${status} ${code}`) && stored === 'no', `${group}: answer ${status} ${code} stored:${stored}: ${said}`);
      }
      // The ones the app took in were ended by the body deadline.
      assert.ok(
        slow.some(({ result }) => result[0] === 408),
        `no slow body met the body deadline: ${said}`,
      );
    });
  }
});
