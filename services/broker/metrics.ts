import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { certificateExpiryGauge } from '../common/metrics/expiry';
import { keyExpiryGauge } from '../common/metrics/key-expiry';

export function brokerMetrics(registry: Registry) {
  const registers = [registry];
  return {
    processed: new Counter({ name: 'nonstop_broker_requests_total', help: 'Requests taken off the queue, by outcome', labelNames: ['outcome'] as const, registers }),
    refused: new Counter({ name: 'nonstop_broker_refused_total', help: 'Requests refused by validation, by error code', labelNames: ['code'] as const, registers }),
    poison: new Counter({ name: 'nonstop_broker_poison_total', help: 'Poison messages dead-lettered, by reason', labelNames: ['reason'] as const, registers }),
    claimed: new Counter({ name: 'nonstop_broker_claimed_total', help: 'Requests claimed from consumers that went silent', registers }),
    inflight: new Gauge({ name: 'nonstop_broker_inflight', help: 'Requests being processed', registers }),
    coreSeconds: new Histogram({
      name: 'nonstop_broker_core_seconds',
      help: 'Core round trip, by method',
      labelNames: ['method'] as const,
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    coreBatchRecords: new Histogram({
      name: 'nonstop_broker_core_batch_records',
      help: 'Records per insert sent to core (group commit; 1 = sent on its own)',
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    }),
    coreRetries: new Counter({ name: 'nonstop_broker_core_retries_total', help: 'Retries of core calls (each attempt after the first)', registers }),
    tunnelUp: new Gauge({ name: 'nonstop_broker_tunnel_up', help: '1 when the tunnel to a gateway is up', labelNames: ['gateway'] as const, registers }),
    tunnelConnects: new Counter({ name: 'nonstop_broker_tunnel_connects_total', help: 'Tunnels established, by gateway', labelNames: ['gateway'] as const, registers }),
    gateways: new Gauge({ name: 'nonstop_broker_gateways', help: 'Gateways this broker serves (BROKER_GATEWAYS_FILE as last applied)', registers }),
    gatewayReloads: new Counter({
      name: 'nonstop_broker_gateway_reloads_total',
      help: 'Reads of BROKER_GATEWAYS_FILE after start, by outcome: applied, unchanged, refused (did not parse or validate; nothing changed), failed (could not be applied; retried)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    redisRestarts: new Gauge({ name: 'nonstop_broker_redis_restarts', help: 'Times redis-server was restarted', registers }),
    // Its client certificate for core (certificate="client") and the CA it checks core with ("ca").
    certificateExpiry: certificateExpiryGauge(registers),
    // Its SSH key and knock secrets, dated by keygen (key-dates.json).
    keyExpiry: keyExpiryGauge(registers),
  };
}

export type BrokerMetrics = ReturnType<typeof brokerMetrics>;
