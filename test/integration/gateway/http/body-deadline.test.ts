import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_JSON_LIMITS } from '../../../../services/common/json/limits';
import { AdmissionControl } from '../../../../services/gateway/http/admission';
import { startParkingGatewayApp, type ParkedRequest, type ParkingGatewayApp } from '../../../support/parking-gateway-app';
import { waitFor } from '../../../support/wait';

/**
 * The gateway app's total deadline for a request body, as createApp wires it, on a real
 * loopback listener with clients writing raw HTTP/1.1 on their own sockets (as nginx does
 * when it streams a body). The queue is a stand-in that parks each request until the test
 * answers it, as a stalled core would; a body that never arrives must never reach it.
 */
describe('gateway app: body deadline', function () {
  this.timeout(30_000);

  const DEADLINE_MS = 1500;
  /** Well inside the deadline: no gap between two pieces comes near it. */
  const PIECE_INTERVAL_MS = 100;
  const BODY_BYTES = 4096;
  let app: ParkingGatewayApp;
  let port: number;
  let control: AdmissionControl;
  let parked: ParkedRequest[];

  beforeEach(async () => {
    parked = [];
    control = new AdmissionControl({ maxPendingRequests: 8, maxPendingBytes: 64 * 1024 });
    app = await startParkingGatewayApp({ admission: control, limits: DEFAULT_JSON_LIMITS, requestTimeoutMs: 10_000, bodyTimeoutMs: DEADLINE_MS });
    port = app.port;
    parked = app.parked;
  });

  afterEach(async () => {
    await app.close();
  });

  /** A JSON body of exactly BODY_BYTES. */
  const body = Buffer.from(`{"t":"${'x'.repeat(BODY_BYTES - 8)}"}`);

  interface Trickle {
    /** Everything the server sent, once it closed the connection. */
    closed: Promise<{ text: string; atMs: number }>;
    /** What the server has sent so far. */
    received: () => string;
    /** How much of the body was written. */
    written: () => number;
    socket: Socket;
  }

  /**
   * A POST whose headers announce BODY_BYTES and whose body follows `pieceBytes` every
   * PIECE_INTERVAL_MS, until the body is whole, the server closes, or `maxMs` has passed.
   */
  function trickle(pieceBytes: number, maxMs: number): Trickle {
    const socket = connect(port, '127.0.0.1');
    const startedAt = Date.now();
    let off = 0;
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('utf8')));
    const closed = new Promise<{ text: string; atMs: number }>((resolve) => {
      socket.on('close', () => resolve({ text: received, atMs: Date.now() - startedAt }));
    });
    socket.on('error', () => undefined); // a reset while writing ends the connection like a close
    socket.write(
      `POST /v1/records/notes HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer nst_0123456789abcdef_secret\r\nContent-Type: application/json\r\nContent-Length: ${BODY_BYTES}\r\n\r\n`,
    );
    void (async () => {
      while (off < body.length && !socket.destroyed && Date.now() - startedAt < maxMs) {
        socket.write(body.subarray(off, off + pieceBytes));
        off += pieceBytes;
        await sleep(PIECE_INTERVAL_MS);
      }
      // Past maxMs the test has its answer (none): the client gives up.
      if (off < body.length) socket.destroy();
    })();
    return { closed, received: () => received, written: () => off, socket };
  }

  const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const jsonOf = (text: string): unknown => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));

  it('answers 408 request_timeout (stored "no") and closes the connection when a body is still trickling at the deadline though no gap reached it; nothing is queued and the admission share is released', async () => {
    // 4 bytes every 100 ms: the whole body would take over 100 s.
    const t = trickle(4, 10 * DEADLINE_MS);
    await waitFor('the request admitted', () => control.pending.requests === 1, 5000, 10);
    assert.deepEqual(control.pending, { requests: 1, bytes: BODY_BYTES });
    const { text, atMs } = await t.closed;
    assert.equal(statusOf(text), 408, text);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.deepEqual(jsonOf(text), { error: { code: 'request_timeout', message: `the request body did not arrive within ${DEADLINE_MS / 1000} s`, stored: 'no' } });
    // Cut at the deadline (timers never fire early), while the client was still writing.
    assert.ok(atMs >= DEADLINE_MS, `closed after ${atMs} ms`);
    assert.ok(t.written() < BODY_BYTES, `the whole body was written (${t.written()} bytes)`);
    assert.equal(parked.length, 0, 'a body that never arrived was queued');
    await waitFor('the admission share released', () => control.pending.requests === 0 && control.pending.bytes === 0, 2000, 10);
  });

  it('queues a body sent in slow pieces that arrives whole before the deadline (positive control for the same client)', async () => {
    // 512 bytes every 100 ms: whole in 800 ms, about half the deadline.
    const t = trickle(512, 10 * DEADLINE_MS);
    await waitFor('the body queued', () => parked.length === 1, 5000, 10);
    assert.equal(t.written(), BODY_BYTES);
    parked[0]!.answer();
    // The client leaves once answered; the server would keep the connection for the next request.
    const answered = await waitFor('the answer', () => (statusOf(t.received()) !== 0 ? t.received() : undefined), 5000, 10);
    assert.equal(statusOf(answered), 201, answered);
    t.socket.destroy();
  });

  it('leaves a request whose body arrived whole alone while it waits past the deadline for its reply', async () => {
    const t = trickle(BODY_BYTES, 10 * DEADLINE_MS);
    await waitFor('the body queued', () => parked.length === 1, 5000, 10);
    await sleep(2 * DEADLINE_MS);
    assert.equal(t.received(), '', 'answered before the reply came');
    parked[0]!.answer();
    const answered = await waitFor('the answer', () => (statusOf(t.received()) !== 0 ? t.received() : undefined), 5000, 10);
    assert.equal(statusOf(answered), 201, answered);
    t.socket.destroy();
  });
});
