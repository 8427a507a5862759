import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreClient, MAX_RESPONSE_BYTES } from '../../../services/broker/core-client/client';
import { brokerMetrics } from '../../../services/broker/metrics';
import { ErrorCodes } from '../../../services/common/errors/codes';
import { isNonstopError } from '../../../services/common/errors/nonstop-error';
import { issueCertificate } from '../../../services/common/pki/certificates';
import { createCorePki, type CorePki } from '../../support/core-fixtures';
import { waitFor } from '../../support/wait';

/**
 * The broker's core client against a real HTTPS server that demands a client certificate
 * from the deployment CA, as core does. The server answers each request as a test scripts
 * it (503, dropped connection, no answer, or a record), so a retry is a real second request
 * on the wire; the retries counter is read from the Prometheus text the broker serves.
 */

type Answer = 'unavailable' | 'drop' | 'hang' | 'conflict' | 'created' | 'largest' | 'too-large';

/** A JSON body of exactly `bytes` bytes. */
const jsonOfSize = (bytes: number): string => `{"pad":"${'x'.repeat(bytes - 10)}"}`;

const RETRIES_METRIC = 'nonstop_broker_core_retries_total';

/** The counter's value in the registry's exposition text; fails when the metric is missing. */
async function retriesMetric(registry: Registry): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${RETRIES_METRIC} `) || l.startsWith(`${RETRIES_METRIC}{`));
  assert.ok(line, `${RETRIES_METRIC} is not in the metrics text:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('CoreClient retries against an mTLS server', function () {
  this.timeout(30_000);

  let pki: CorePki;
  let server: Server;
  let port: number;
  /** What the server does with each next request, in order; then `created`. */
  let script: Answer[];
  /** The client certificate's CN, per request the server saw. */
  let seen: string[];
  /** The headers of each request the server saw. */
  let headers: IncomingHttpHeaders[];
  let held: ServerResponse[];
  /** TLS connections the server accepted, and how many of them have closed. */
  let connections: number;
  let closed: number;
  let registry: Registry;
  let client: CoreClient | undefined;

  before(async () => {
    pki = await createCorePki();
    server = createServer({ cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (req, res) => {
      seen.push(String((req.socket as TLSSocket).getPeerCertificate().subject.CN));
      headers.push(req.headers);
      req.resume();
      req.on('end', () => {
        const answer = script.shift() ?? 'created';
        const json = (status: number, body: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        };
        if (answer === 'unavailable') json(503, { error: { code: ErrorCodes.unavailable.code, message: 'not now' } });
        else if (answer === 'drop') req.socket.destroy();
        else if (answer === 'hang') held.push(res);
        else if (answer === 'conflict') json(409, { error: { code: ErrorCodes.conflict.code, message: 'taken' } });
        else if (answer === 'largest' || answer === 'too-large') {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end(jsonOfSize(answer === 'largest' ? MAX_RESPONSE_BYTES : MAX_RESPONSE_BYTES + 1));
        } else json(201, { id: req.headers['x-request-id'] });
      });
    });
    server.on('secureConnection', (socket) => {
      connections++;
      socket.on('close', () => closed++);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  });

  beforeEach(() => {
    script = [];
    seen = [];
    headers = [];
    held = [];
    connections = 0;
    closed = 0;
    registry = new Registry();
  });

  afterEach(() => {
    client?.close();
    client = undefined;
    for (const res of held) res.destroy();
  });

  /** A client wired as services/broker/main.ts wires it: the broker's own retries counter. */
  function newClient(opts: { retries?: number; timeoutMs?: number } = {}, url = `https://127.0.0.1:${port}`): CoreClient {
    client?.close();
    client = new CoreClient(
      {
        url,
        ca: pki.ca.certPem,
        cert: pki.broker.certPem,
        key: pki.broker.keyPem,
        serverName: 'localhost',
        timeoutMs: opts.timeoutMs ?? 10_000,
        maxInFlight: 4,
        retries: opts.retries ?? 3,
      },
      brokerMetrics(registry).coreRetries,
    );
    return client;
  }

  const insert = (c: CoreClient, id = randomUUID()) => c.insert({ requestId: id, collection: 'notes', token: 'tok-abcdefgh', deadline: performance.now() + 20_000 }, { title: 'hi' });

  it('counts two retries when core answers 503 twice and then stores the record', async () => {
    const c = newClient();
    script = ['unavailable', 'unavailable'];
    const id = randomUUID();
    const res = await insert(c, id);
    assert.deepEqual(res, { status: 201, body: { id } });
    assert.equal(seen.length, 3, 'three requests reached the server');
    assert.deepEqual([...new Set(seen)], ['broker-1'], 'every attempt presented the broker certificate');
    assert.equal(await retriesMetric(registry), 2);
  });

  it('counts a retry after the connection drops before an answer', async () => {
    const c = newClient();
    script = ['drop'];
    const res = await insert(c);
    assert.equal(res.status, 201);
    assert.equal(seen.length, 2);
    assert.equal(await retriesMetric(registry), 1);
  });

  it('counts every retry when core never recovers, then reports storage unavailable', async () => {
    const c = newClient({ retries: 2 });
    script = ['unavailable', 'unavailable', 'unavailable', 'unavailable'];
    await assert.rejects(insert(c), (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.unavailable.code && err.status === 503);
    assert.equal(seen.length, 3, 'one attempt and two retries');
    assert.equal(await retriesMetric(registry), 2);
  });

  it('counts the retry of an attempt that timed out and reports the outcome unknown (maybe stored), not unavailability', async () => {
    const c = newClient({ retries: 1, timeoutMs: 1000 });
    script = ['hang', 'hang'];
    await assert.rejects(insert(c), (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.outcomeUnknown.code && err.status === 502);
    assert.equal(seen.length, 2);
    assert.equal(await retriesMetric(registry), 1);
  });

  it('reports deadline_exceeded (maybe stored) when the budget runs out with core holding the request', async () => {
    const c = newClient({ retries: 3, timeoutMs: 10_000 });
    script = ['hang', 'hang', 'hang', 'hang'];
    const started = performance.now();
    await assert.rejects(
      c.insert({ requestId: randomUUID(), collection: 'notes', token: 'tok-abcdefgh', deadline: performance.now() + 600 }, { title: 'hi' }),
      (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.deadline.code && err.status === 504,
    );
    // Within the budget, not the per-attempt timeout: the budget bounds every attempt.
    assert.ok(performance.now() - started < 5000);
    const budget = Number(headers[0]!['x-request-budget-ms']);
    assert.ok(budget > 0 && budget <= 600, `budget header ${budget}`);
  });

  it('reports unavailable (not stored) when no attempt reached core, and passes the idempotency key on', async () => {
    const down = newClient({ retries: 1, timeoutMs: 1000 }, 'https://127.0.0.1:1');
    await assert.rejects(insert(down), (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.unavailable.code && err.status === 503);
    // Positive control from the same client code: with a live core the call goes through, key and all.
    registry = new Registry();
    const c = newClient();
    const res = await c.insert({ requestId: randomUUID(), collection: 'notes', token: 'tok-abcdefgh', key: 'retry-key-1', deadline: performance.now() + 5000 }, { title: 'hi' });
    assert.equal(res.status, 201);
    assert.equal(headers.at(-1)!['idempotency-key'], 'retry-key-1');
  });

  it('answers deadline_exceeded, not unavailable, when the budget ran out before a request could be written (core frozen: TCP accepted, TLS never answered)', async () => {
    // A paused core container: the kernel completes the TCP handshake, nobody answers the
    // TLS one, so no attempt is ever written. "Not stored" would be true of these attempts
    // but not of the key: an earlier attempt under it may still reach core, and the gateway
    // answers 504 at this same instant.
    const frozen = createNetServer(() => undefined);
    await new Promise<void>((resolve) => frozen.listen(0, '127.0.0.1', () => resolve()));
    try {
      const c = newClient({ retries: 3, timeoutMs: 300 }, `https://127.0.0.1:${(frozen.address() as AddressInfo).port}`);
      await assert.rejects(
        c.insert({ requestId: randomUUID(), collection: 'notes', token: 'tok-abcdefgh', deadline: performance.now() + 1200 }, { title: 'hi' }),
        (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.deadline.code && err.status === 504,
      );
      assert.ok((await retriesMetric(registry)) >= 1, 'the frozen core was tried more than once');
    } finally {
      frozen.close();
    }
  });

  it('leaves the counter unchanged when core answers on the first try, and moves it on the next retried call', async () => {
    const c = newClient();
    const first = await insert(c);
    assert.equal(first.status, 201);
    assert.equal(seen.length, 1);
    assert.equal(await retriesMetric(registry), 0);
    // Positive control on the same client and registry: one 503, one retry.
    script = ['unavailable'];
    const second = await insert(c);
    assert.equal(second.status, 201);
    assert.equal(seen.length, 3);
    assert.equal(await retriesMetric(registry), 1);
  });

  it('does not retry an answer core gave on purpose (409), and counts nothing', async () => {
    const c = newClient();
    script = ['conflict'];
    const res = await insert(c);
    assert.equal(res.status, 409);
    assert.equal(seen.length, 1);
    assert.equal(await retriesMetric(registry), 0);
  });

  /** Answers every held request 201, as core would once it resumes. */
  function answerHeld(): void {
    for (const res of held.splice(0)) {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"id":"held"}');
    }
  }

  it('keeps one TLS connection for sequential calls, and opens at most maxInFlight for concurrent ones, queueing the rest', async () => {
    const c = newClient();
    for (let i = 0; i < 10; i++) assert.equal((await insert(c)).status, 201);
    assert.equal(seen.length, 10);
    // undici waits one event-loop turn before it reuses a socket (for servers that close one
    // they said they would keep), so a call made as the previous one returns may open a
    // second connection; after that the two are reused in turn.
    assert.ok(connections <= 2, `ten sequential calls reuse kept-alive connections (${connections} opened)`);
    // Positive control of the count, on the same client: calls held by the server at once
    // need one connection each, up to maxInFlight (4); the other two wait for one.
    script = ['hang', 'hang', 'hang', 'hang'];
    const calls = Array.from({ length: 6 }, () => insert(c));
    await waitFor('four calls held by the server', () => held.length === 4);
    await sleep(300);
    assert.equal(held.length, 4, 'no fifth request reached the server while four were in flight');
    assert.equal(connections, 4, 'four calls at once, four connections');
    answerHeld();
    assert.deepEqual(
      (await Promise.all(calls)).map((r) => r.status),
      [201, 201, 201, 201, 201, 201],
    );
    assert.equal(connections, 4, 'the queued calls went on connections already open');
    assert.equal(await retriesMetric(registry), 0);
  });

  it('moves new calls to a new certificate after useTls while a call held on the old pool finishes there, then closes the old connection', async () => {
    const c = newClient();
    script = ['hang'];
    const before = insert(c);
    await waitFor('the first call held by the server', () => held.length === 1);
    const broker2 = await issueCertificate(pki.ca, { commonName: 'broker-2', usage: 'client' });
    c.useTls({ ca: pki.ca.certPem, cert: broker2.certPem, key: broker2.keyPem });
    assert.equal((await insert(c)).status, 201);
    assert.equal(c.retiringInFlight, 1, 'the old pool still carries the held call');
    assert.equal(closed, 0, 'no connection was cut by the switch');
    answerHeld();
    assert.equal((await before).status, 201);
    assert.equal(c.retiringInFlight, 0);
    await waitFor("the old pool's connection to close", () => closed === 1, 5000);
    assert.deepEqual(seen, ['broker-1', 'broker-2'], 'each call presented its pool certificate');
    assert.equal(connections, 2);
    assert.equal(await retriesMetric(registry), 0, 'the held call was not cut and retried');
    // The new pool's connection stays open for the next call.
    assert.equal((await insert(c)).status, 201);
    assert.deepEqual([connections, closed], [2, 1]);
  });

  it('refuses a response body above MAX_RESPONSE_BYTES as a failed attempt (maybe stored), and reads one of exactly that size', async () => {
    const c = newClient({ retries: 1 });
    script = ['too-large', 'too-large'];
    await assert.rejects(insert(c), (err: unknown) => isNonstopError(err) && err.code === ErrorCodes.outcomeUnknown.code && err.status === 502);
    assert.equal(seen.length, 2, 'the too large answer was retried once');
    // Control from the same server and client: the largest allowed body is read whole.
    script = ['largest'];
    const res = await insert(c);
    assert.equal(res.status, 201);
    assert.equal((res.body as { pad: string }).pad.length, MAX_RESPONSE_BYTES - 10);
  });
});
