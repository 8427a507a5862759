import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { ApiClient, createToken } from '../support/stack/api-client';
import type { ComposeSpec } from '../support/stack/compose-config';
import { upStack } from '../support/stack/fixture';
import { CgroupSampler, hostCgroupDir, memoryFigures, MiB, resetPeak, restartState, type MemoryFigures } from '../support/stack/memory';
import { execIn, type Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

/**
 * Overload at the door: 4,096 concurrent POSTs of ~1 MiB each (16 probe containers on the
 * edge network, 256 each: nginx lets 256 connections per address through) while core is
 * paused, so nothing the gateway takes in is answered before its deadline. The gateway must
 * refuse what it cannot hold (503 overloaded with Retry-After, or nginx's 429) rather than
 * be killed: every container stays under its memory limit (the peak its cgroup recorded over
 * the burst), nothing is OOM-killed or restarted, every request ends with a documented JSON
 * answer, and once core is back a fresh write goes through.
 *
 * The probes talk to the gateway's port 443 on the edge network, the port compose publishes:
 * through the host's published port every connection would come from one address (Docker's
 * proxy) and nginx would turn all but 256 away before the app saw them. Each request carries
 * its own Idempotency-Key, so a connection nginx cuts without an answer (it closes waiting
 * connections when its table is full) is re-sent, as the API allows; those cuts are counted.
 */
const PROBES = 16;
const PER_PROBE = 256;
/** 16 strings of 65,000 characters: ~1,040,000 bytes, inside every tier's 1 MiB body limit. */
const CHUNKS = 16;
const CHUNK_CHARS = 65_000;
const SERVICES = ['gateway', 'broker', 'core'] as const;

/** A collection whose schema admits bodies of ~1 MiB (the shipped ones stop at ~20 KB). */
const BLOBS_SCHEMA = JSON.stringify({
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  properties: {
    title: { type: 'string', minLength: 1, maxLength: 200 },
    chunks: { type: 'array', maxItems: CHUNKS, items: { type: 'string', maxLength: 65_536 } },
  },
  required: ['title'],
  additionalProperties: false,
});

/** The documented answers this burst may get, by status, with the JSON codes each may carry. */
const ALLOWED: Record<number, string[]> = {
  201: [],
  // A body the gateway took in but that did not arrive whole within BODY_TIMEOUT_MS (a starved
  // gateway reads slowly): known not stored.
  408: ['request_timeout'],
  429: ['rate_limited'],
  503: ['overloaded', 'queue_full', 'no_tunnel', 'unavailable'],
  504: ['deadline_exceeded'],
};

type Result = [
  status: number,
  code: string | null,
  startMs: number,
  endMs: number,
  cutBeforeHandshake: number,
  cutAfterHandshake: number,
  retryAfter: string | null,
  message: string | null,
  queued: boolean,
];

/** Most requests in flight at one moment, from their [start, end] times. */
function peakInFlight(results: Result[]): number {
  const edges = results.flatMap(([, , start, end]) => [[start, 1] as const, [end, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, d] of edges) peak = Math.max(peak, (now += d));
  return peak;
}

describe('gateway overload while core is paused', function () {
  this.timeout(600_000);

  let stack: Stack;
  let api: ApiClient;
  let token: string;
  let probes: Docker.Container[];

  before(async () => {
    stack = await upStack({}, (spec: ComposeSpec) => {
      // The broker reads its schemas at start from SCHEMA_DIR: the shipped ones plus `blobs`,
      // copied into its tmpfs before its own command runs (its root filesystem is read-only).
      const broker = spec.services.broker!;
      broker.environment.SCHEMA_DIR = '/run/nonstop/schemas';
      broker.environment.BLOBS_SCHEMA = BLOBS_SCHEMA;
      broker.command = [
        'sh',
        '-c',
        'mkdir -p /run/nonstop/schemas && cp /etc/nonstop/schemas/*.json /run/nonstop/schemas/ && printf %s "$BLOBS_SCHEMA" > /run/nonstop/schemas/blobs.json && exec node /app/dist/services/broker/main.js',
      ];
    });
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes', 'blobs']);
    await waitFor('the chain', async () => (await api.post('notes', { title: 'ready' }, token)).status === 201, 60_000, 250);
    // Positive control for the burst's collection: one ~1 MiB blob is stored while core runs.
    const big = await api.post('blobs', { title: 'control', chunks: Array.from({ length: CHUNKS }, () => 'a'.repeat(CHUNK_CHARS)) }, token);
    assert.equal(big.status, 201, big.text.slice(0, 300));
    probes = await Promise.all(Array.from({ length: PROBES }, () => stack.probe('edge')));
  });

  after(async () => {
    await stack?.container('core').unpause().catch(() => undefined);
    await stack?.down();
  });

  it('answers 4,096 concurrent 1 MiB writes with 503 overloaded (Retry-After), 429 or 504, stays under every memory limit with nothing killed, and writes again once core is back', async () => {
    const startedAt = Date.now();
    const cert = await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt']);
    assert.equal(cert.exitCode, 0, cert.stderr);
    const gatewayIp = await stack.ip('gateway', 'edge');
    const before = await restartState(stack, SERVICES);
    // Each peak is reset from the host where it can be, so it is the burst's; otherwise it
    // covers the container's whole life, a bound that is only higher.
    const dirs: Record<string, string | undefined> = {};
    for (const s of SERVICES) {
      dirs[s] = await hostCgroupDir(stack, s);
      resetPeak(dirs[s]);
    }
    const memBefore: Record<string, MemoryFigures> = {};
    for (const s of SERVICES) memBefore[s] = await memoryFigures(stack, s);

    await stack.container('core').pause();
    const sampler = dirs.gateway ? new CgroupSampler(dirs.gateway) : undefined;
    sampler?.start();
    let sampled: Record<string, number> | undefined;
    let results: Result[] = [];
    let bodyBytes = 0;
    let burstMs = 0;
    try {
      // Every probe's requests start at one moment, once all the probes' node processes are up.
      const startAt = Date.now() + 3000;
      const outputs = await Promise.all(
        probes.map((probe, p) => {
          const options = {
            host: gatewayIp,
            port: 443,
            servername: 'gateway',
            ca: cert.stdout,
            path: '/v1/records/blobs',
            token,
            tag: `burst-${p}`,
            count: PER_PROBE,
            chunks: CHUNKS,
            chunkChars: CHUNK_CHARS,
            startAt,
            timeoutMs: 60_000,
            retries: 20,
          };
          return execIn(stack.docker, probe, ['node', '/usr/local/bin/burst', JSON.stringify(options)], { timeoutMs: 240_000 });
        }),
      );
      burstMs = Date.now() - startAt;
      for (const out of outputs) {
        assert.equal(out.exitCode, 0, out.stderr);
        const parsed = JSON.parse(out.stdout) as { bodyBytes: number; results: Result[] };
        bodyBytes = parsed.bodyBytes;
        results = results.concat(parsed.results);
      }
    } finally {
      sampled = await sampler?.stop();
      await stack.container('core').unpause();
    }
    // The peaks stay recorded; read once core can run commands again.
    const memAfter: Record<string, MemoryFigures> = {};
    for (const s of SERVICES) memAfter[s] = await memoryFigures(stack, s);
    const after = await restartState(stack, SERVICES);

    const tally: Record<string, number> = {};
    const durations: Record<string, number[]> = {};
    for (const [status, code, start, end, , , , message, queued] of results) {
      tally[`${status} ${code ?? ''}`] = (tally[`${status} ${code ?? ''}`] ?? 0) + 1;
      (durations[`${status} ${queued ? 'queued' : 'not queued'}: ${message ?? ''}`] ??= []).push(end - start);
    }
    // How many of each answer, and how long they took (median and longest, ms).
    const messages = Object.fromEntries(
      Object.entries(durations).map(([said, ms]) => {
        ms.sort((a, b) => a - b);
        return [said, { n: ms.length, medianMs: ms[ms.length >> 1], maxMs: ms[ms.length - 1] }];
      }),
    );
    const figures = {
      requests: results.length,
      bodyBytes,
      answers: tally,
      messages,
      cutBeforeHandshake: results.reduce((n, r) => n + r[4], 0),
      cutAfterHandshake: results.reduce((n, r) => n + r[5], 0),
      peakInFlight: peakInFlight(results),
      burstSeconds: burstMs / 1000,
      memoryMiB: Object.fromEntries(
        SERVICES.map((s) => [
          s,
          {
            limit: MiB(memAfter[s]!.limit),
            peak: MiB(memAfter[s]!.peak),
            peakOfBurstOnly: dirs[s] !== undefined,
            failcnt: memAfter[s]!.failcnt - memBefore[s]!.failcnt,
            oomKills: memAfter[s]!.oomKills - memBefore[s]!.oomKills,
          },
        ]),
      ),
      gatewaySampledPeakMiB: sampled ?? 'not on the engine host',
      restarts: Object.fromEntries(SERVICES.map((s) => [s, after[s]!.restarts - before[s]!.restarts])),
    };
    console.log(`      overload figures: ${JSON.stringify(figures)}`);

    assert.equal(results.length, PROBES * PER_PROBE);
    // Nothing was killed or restarted, and no process in any container met the OOM killer.
    assert.deepEqual(after, before, JSON.stringify(figures));
    for (const s of SERVICES) {
      assert.equal(after[s]!.running, true, s);
      assert.equal(memAfter[s]!.oomKills, memBefore[s]!.oomKills, `a process in ${s} was OOM-killed: ${JSON.stringify(figures)}`);
      // Under the limit: the peak stayed below it and the cgroup never had to reclaim at it.
      assert.ok(memAfter[s]!.peak < memAfter[s]!.limit, `${s} reached its memory limit: ${JSON.stringify(figures)}`);
      assert.equal(memAfter[s]!.failcnt, memBefore[s]!.failcnt, `${s} hit its memory limit: ${JSON.stringify(figures)}`);
    }
    // Every request ended with a documented JSON answer; every overload refusal says when to retry.
    for (const [status, code, , , , , retryAfter, message] of results) {
      const allowed = ALLOWED[status];
      assert.ok(allowed !== undefined && (status === 201 || allowed.includes(code ?? '')), `answer ${status} ${code} (${message}): ${JSON.stringify(figures)}`);
      if (code === 'overloaded') assert.match(retryAfter ?? '', /^\d+$/, 'overloaded without Retry-After');
    }
    // The app's admission did both of its jobs: it took in what it could hold (queued, those
    // waited for core and ran out of time) and refused the rest from their headers.
    assert.ok((tally['503 overloaded'] ?? 0) > 0, JSON.stringify(figures));
    assert.ok(results.some(([status, , , , , , , , queued]) => status === 504 && queued), JSON.stringify(figures));
    assert.ok(results.every(([, code, , , , , , , queued]) => code !== 'overloaded' || !queued), 'a request was queued and refused');
    // Every 504 is the app's, for a request it queued: none is nginx's for one the app never
    // got (its connect timer, fired late by a starved event loop, once answered those so).
    assert.deepEqual(results.filter(([status, , , , , , , , queued]) => status === 504 && !queued).length, 0, JSON.stringify(figures));

    // And the chain serves again as soon as core is back.
    const resumedAt = Date.now();
    await waitFor('a fresh write after core resumed', async () => (await api.post('notes', { title: 'after the burst' }, token)).status === 201, 60_000, 250);
    console.log(`      fresh write ${Date.now() - resumedAt} ms after core resumed; test ${(Date.now() - startedAt) / 1000} s`);
  });
});
