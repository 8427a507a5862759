import type { Registry } from 'prom-client';
import { certificateExpiryGauge, crlExpiryGauge } from '../common/metrics/expiry';
import { keyExpiryGauge } from '../common/metrics/key-expiry';

/**
 * Every metric core exports besides the process defaults, created once on its registry: the
 * expiry of its server certificate (certificate="server"), of the deployment CA it checks
 * brokers with ("ca") and of that CA's revocation list (crl="ca").
 */
export function coreMetrics(registry: Registry) {
  const registers = [registry];
  return {
    certificateExpiry: certificateExpiryGauge(registers),
    crlExpiry: crlExpiryGauge(registers),
    // Keys keygen dates in key-dates.json (none of core's today: see services/keygen/key-dates.ts).
    keyExpiry: keyExpiryGauge(registers),
  };
}

export type CoreMetrics = ReturnType<typeof coreMetrics>;
