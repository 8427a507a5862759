/**
 * A broker QueueConsumer in a process of its own, for tests that SIGKILL a consumer while
 * it holds a request: a dead process stops everything a live one does (reads, claims,
 * heartbeats) and drops its connections, which no in-process stand-in quite does.
 *
 * Options: ConsumerOptions as JSON in NONSTOP_TEST_CONSUMER, plus `by`, the name it signs
 * its replies with. Its handler holds every request until a line `release <id>` arrives on
 * stdin, then answers 201 with body {id, by}. Prints JSON lines on stdout:
 * {"event":"started"} and {"event":"request","id":...} for each request it is handed.
 */
import { PROTOCOL_VERSION } from '../../services/common/queue/keys';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { brokerMetrics } from '../../services/broker/metrics';
import { QueueConsumer, type ConsumerOptions } from '../../services/broker/queue/consumer';
import type { ReplyEnvelope } from '../../services/common/queue/envelope';
import { silentLogger } from './logger';

const opts = JSON.parse(process.env.NONSTOP_TEST_CONSUMER ?? '') as ConsumerOptions & { by: string };
const held = new Map<string, () => void>();
const say = (o: Record<string, unknown>): boolean => process.stdout.write(`${JSON.stringify(o)}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, id] = line.split(' ');
  if (verb === 'release' && id) held.get(id)?.();
});

const consumer = new QueueConsumer(
  opts,
  (e) =>
    new Promise<ReplyEnvelope>((resolve) => {
      held.set(e.id, () => resolve({ v: PROTOCOL_VERSION, id: e.id, status: 201, body: { id: e.id, by: opts.by } }));
      say({ event: 'request', id: e.id });
    }),
  brokerMetrics(new Registry()),
  silentLogger(),
);
consumer.start().then(
  () => say({ event: 'started' }),
  (err: Error) => {
    process.stderr.write(`consumer did not start: ${err.message}\n`);
    process.exit(1);
  },
);
