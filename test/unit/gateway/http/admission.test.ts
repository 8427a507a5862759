import assert from 'node:assert/strict';
import http from 'node:http';
import { DEFAULT_JSON_LIMITS } from '../../../../services/common/json/limits';
import { AdmissionControl, chargedBytes, RETRY_AFTER_SECONDS, type Admission } from '../../../../services/gateway/http/admission';
import { startParkingGatewayApp, type ParkedRequest, type ParkingGatewayApp } from '../../../support/parking-gateway-app';
import { waitFor } from '../../../support/wait';

function admitted(a: Admission): () => void {
  assert.ok(a.admitted, `refused (${a.admitted ? '' : a.refusal})`);
  return a.release;
}

describe('AdmissionControl', () => {
  it('admits up to maxPendingRequests, refuses the next, and takes one more once one is released', () => {
    const control = new AdmissionControl({ maxPendingRequests: 3, maxPendingBytes: 1000 });
    const releases = [0, 0, 0].map(() => admitted(control.tryAdmit(0)));
    assert.deepEqual(control.tryAdmit(0), { admitted: false, refusal: 'requests' });
    releases[1]!();
    admitted(control.tryAdmit(0));
    assert.deepEqual(control.tryAdmit(0), { admitted: false, refusal: 'requests' });
  });

  it('admits bodies while their total fits maxPendingBytes exactly, and refuses one byte more', () => {
    const control = new AdmissionControl({ maxPendingRequests: 100, maxPendingBytes: 1000 });
    const first = admitted(control.tryAdmit(600));
    assert.deepEqual(control.tryAdmit(401), { admitted: false, refusal: 'bytes' });
    admitted(control.tryAdmit(400));
    assert.deepEqual(control.pending, { requests: 2, bytes: 1000 });
    // Bodiless requests still fit while bytes are exhausted: only requests bound them.
    admitted(control.tryAdmit(0));
    first();
    admitted(control.tryAdmit(600));
    assert.deepEqual(control.pending, { requests: 3, bytes: 1000 });
  });

  it('gives back exactly what a request took, once, however often its release is called', () => {
    const control = new AdmissionControl({ maxPendingRequests: 10, maxPendingBytes: 1000 });
    const a = admitted(control.tryAdmit(300));
    admitted(control.tryAdmit(200));
    a();
    a();
    assert.deepEqual(control.pending, { requests: 1, bytes: 200 });
  });

  it('counts nothing for a refused request', () => {
    const control = new AdmissionControl({ maxPendingRequests: 1, maxPendingBytes: 100 });
    assert.equal(control.tryAdmit(101).admitted, false);
    assert.deepEqual(control.pending, { requests: 0, bytes: 0 });
    admitted(control.tryAdmit(100));
    assert.equal(control.tryAdmit(0).admitted, false);
    assert.deepEqual(control.pending, { requests: 1, bytes: 100 });
  });

  it('rejects limits and sizes that are not non-negative integers', () => {
    assert.throws(() => new AdmissionControl({ maxPendingRequests: 0, maxPendingBytes: 100 }), RangeError);
    assert.throws(() => new AdmissionControl({ maxPendingRequests: 1, maxPendingBytes: 1.5 }), RangeError);
    const control = new AdmissionControl({ maxPendingRequests: 1, maxPendingBytes: 100 });
    assert.throws(() => control.tryAdmit(-1), RangeError);
    assert.throws(() => control.tryAdmit(Number.NaN), RangeError);
  });
});

describe('chargedBytes', () => {
  it('charges the declared length, never more than the app reads; a chunked body the most; none nothing', () => {
    assert.equal(chargedBytes({ 'content-length': '2048' }, 4096), 2048);
    assert.equal(chargedBytes({ 'content-length': '999999' }, 4096), 4096);
    assert.equal(chargedBytes({ 'transfer-encoding': 'chunked' }, 4096), 4096);
    assert.equal(chargedBytes({}, 4096), 0);
  });
});

/**
 * The middleware as createApp wires it, over a loopback listener. The queue is a stub that
 * parks every request until the test answers it, as a stalled core would.
 */
describe('gateway app: admission control', () => {
  const MAX_BODY = 64 * 1024;
  const HOLD_AFTER_ABORT_MS = 2000;
  let app: ParkingGatewayApp;
  let port: number;
  let control: AdmissionControl;
  let parked: ParkedRequest[];

  beforeEach(async () => {
    parked = [];
    control = new AdmissionControl({ maxPendingRequests: 3, maxPendingBytes: MAX_BODY + MAX_BODY / 2 });
    app = await startParkingGatewayApp({ admission: control, limits: { ...DEFAULT_JSON_LIMITS, maxBytes: MAX_BODY }, requestTimeoutMs: HOLD_AFTER_ABORT_MS, bodyTimeoutMs: 30_000 });
    port = app.port;
    parked = app.parked;
  });

  afterEach(async () => {
    await app.close();
  });

  const TOKEN = 'Bearer nst_0123456789abcdef_secret';

  /** Starts a request; `body` is what is written of it (the declared length may be more). */
  function start(method: 'GET' | 'POST', opts: { declared?: number; body?: Buffer; end?: boolean } = {}): { req: http.ClientRequest; answer: Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> } {
    const path = method === 'GET' ? '/v1/records/notes/0b7f3c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b' : '/v1/records/notes';
    const headers: Record<string, string> = { authorization: TOKEN, 'content-type': 'application/json' };
    if (opts.declared !== undefined) headers['content-length'] = String(opts.declared);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false });
    const answer = new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
    });
    // An abandoned request's rejection is expected; a test that awaits it still sees it.
    answer.catch(() => undefined);
    if (opts.body) req.write(opts.body);
    else req.flushHeaders();
    if (opts.end !== false) req.end();
    return { req, answer };
  }

  /** A JSON body of exactly `n` bytes. */
  const jsonOf = (n: number): Buffer => Buffer.from(`{"t":"${'x'.repeat(n - 8)}"}`);

  it('refuses a request past maxPendingRequests with 503 overloaded and Retry-After, and takes one again once an answer has gone', async () => {
    for (let i = 0; i < 3; i++) start('GET');
    await waitFor('three parked requests', () => parked.length === 3, 5000, 10);
    const refused = await start('GET').answer;
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], String(RETRY_AFTER_SECONDS));
    assert.deepEqual(JSON.parse(refused.body), {
      error: { code: 'overloaded', message: 'the gateway holds too many pending requests; retry later', stored: 'no' },
    });
    assert.equal(parked.length, 3, 'the refused request was not queued');

    parked[0]!.answer();
    await waitFor('the answered request to be released', () => control.pending.requests === 2, 5000, 10);
    start('GET');
    await waitFor('a fourth request parked', () => parked.length === 4, 5000, 10);
  });

  it('refuses a body that would pass maxPendingBytes from its Content-Length, before any of it is sent, and admits one that fits', async () => {
    start('POST', { declared: MAX_BODY, body: jsonOf(MAX_BODY) });
    await waitFor('the first body parked', () => parked.length === 1, 5000, 10);
    // Headers only: had the app waited for this body, the answer would never come.
    const tooMuch = start('POST', { declared: MAX_BODY / 2 + 1, end: false });
    const refused = await tooMuch.answer;
    tooMuch.req.destroy();
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], String(RETRY_AFTER_SECONDS));
    assert.equal((JSON.parse(refused.body) as { error: { code: string } }).error.code, 'overloaded');
    assert.equal(parked.length, 1);

    start('POST', { declared: MAX_BODY / 2, body: jsonOf(MAX_BODY / 2) });
    await waitFor('the fitting body parked', () => parked.length === 2, 5000, 10);
    assert.deepEqual(control.pending, { requests: 2, bytes: MAX_BODY + MAX_BODY / 2 });
  });

  it('releases a request at once when its client leaves before the body arrived: nothing was queued', async () => {
    const partial = start('POST', { declared: MAX_BODY, body: Buffer.from('{"t":"'), end: false });
    await waitFor('the request admitted', () => control.pending.requests === 1, 5000, 10);
    partial.req.destroy();
    await waitFor('the release', () => control.pending.requests === 0 && control.pending.bytes === 0, 1000, 10);
    assert.equal(parked.length, 0);
  });

  it('keeps counting a queued request whose client left, until the request deadline has passed', async () => {
    const whole = start('POST', { declared: 1024, body: jsonOf(1024) });
    await waitFor('the body parked', () => parked.length === 1, 5000, 10);
    whole.req.destroy();
    await waitFor('the server to see the client gone', async () => {
      const n = await new Promise<number>((resolve, reject) => app.server.getConnections((err, c) => (err ? reject(err) : resolve(c))));
      return n === 0;
    }, 5000, 10);
    // The queued envelope (and its body) is still held by the app until a reply or the deadline.
    assert.deepEqual(control.pending, { requests: 1, bytes: 1024 });
    await waitFor('the release after the deadline', () => control.pending.requests === 0, HOLD_AFTER_ABORT_MS + 5000, 50);
    assert.equal(control.pending.bytes, 0);
  });

  it('releases an answered request when its response has been sent', async () => {
    const done = start('POST', { declared: 1024, body: jsonOf(1024) });
    await waitFor('the body parked', () => parked.length === 1, 5000, 10);
    assert.deepEqual(control.pending, { requests: 1, bytes: 1024 });
    parked[0]!.answer();
    assert.equal((await done.answer).status, 201);
    await waitFor('the release', () => control.pending.requests === 0 && control.pending.bytes === 0, 1000, 10);
  });
});
