import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import type { JsonLimits } from '../../services/common/json/limits';
import type { ReplyEnvelope } from '../../services/common/queue/envelope';
import { PROTOCOL_VERSION } from '../../services/common/queue/keys';
import type { AdmissionControl } from '../../services/gateway/http/admission';
import { createApp } from '../../services/gateway/http/app';
import type { QueueRequest } from '../../services/gateway/queue/dispatcher';
import { gatewayMetrics } from '../../services/gateway/metrics';
import { silentLogger } from './logger';

/** A request the stand-in queue holds; answer() lets it through with 201. */
export interface ParkedRequest {
  request: QueueRequest;
  answer: () => void;
}

export interface ParkingGatewayApp {
  server: Server;
  port: number;
  /** Every request that reached the queue, in order, until the test answers it. */
  parked: ParkedRequest[];
  /** Answers whatever is parked, then closes the listener and its connections. */
  close(): Promise<void>;
}

/**
 * The gateway's app as createApp wires it, on a loopback listener, with a queue that parks
 * each request until the test answers it (a stalled core): for tests of what happens before
 * and while requests wait — admission, body deadlines.
 */
export async function startParkingGatewayApp(opts: { admission: AdmissionControl; limits: JsonLimits; requestTimeoutMs: number; bodyTimeoutMs: number }): Promise<ParkingGatewayApp> {
  const parked: ParkedRequest[] = [];
  const app = createApp({
    gatewayId: 'gw1',
    limits: opts.limits,
    requestTimeoutMs: opts.requestTimeoutMs,
    bodyTimeoutMs: opts.bodyTimeoutMs,
    submit: (request: QueueRequest): Promise<ReplyEnvelope> =>
      new Promise((resolve) => {
        parked.push({ request, answer: () => resolve({ v: PROTOCOL_VERSION, id: request.id, status: 201, body: { id: request.id } }) });
      }),
    admission: opts.admission,
    metrics: gatewayMetrics(new Registry()),
    log: silentLogger(),
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    parked,
    async close() {
      for (const p of parked) p.answer();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
