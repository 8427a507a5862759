import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { CoreClient } from '../../../services/broker/core-client/client';
import { brokerMetrics } from '../../../services/broker/metrics';
import { ErrorCodes } from '../../../services/common/errors/codes';
import { isNonstopError } from '../../../services/common/errors/nonstop-error';
import { createCorePki, type CorePki } from '../../support/core-fixtures';

/**
 * The broker's core client against a real HTTPS server that demands a client certificate
 * from the deployment CA, as core does. The server answers each request as a test scripts
 * it (503, dropped connection, no answer, or a record), so a retry is a real second request
 * on the wire; the retries counter is read from the Prometheus text the broker serves.
 */

type Answer = 'unavailable' | 'drop' | 'hang' | 'conflict' | 'created';

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
        else json(201, { id: req.headers['x-request-id'] });
      });
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
});
