import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { certificateExpiryGauge } from '../common/metrics/expiry';
import { keyExpiryGauge } from '../common/metrics/key-expiry';
import { fingerprintOfBlob } from '../common/pki/ssh-keys';
import type { AdmissionControl, AdmissionLimits } from './http/admission';
import type { AuthorizedKey } from './ssh/authorized-keys';

/** Every metric the gateway exports, created once on its registry. */
export function gatewayMetrics(registry: Registry) {
  const registers = [registry];
  return {
    knockSyns: new Counter({ name: 'nonstop_knock_syns_total', help: 'SYNs that touched knock progress, by outcome (throttled: a source over its knock budget; unrecorded: a correct knock whose use could not be recorded, so not opened)', labelNames: ['outcome'] as const, registers }),
    knockPackets: new Gauge({ name: 'nonstop_knock_packets_captured', help: 'Packets the sniffer has read since start', registers }),
    knockTracked: new Gauge({ name: 'nonstop_knock_sources_tracked', help: 'Sources with knock progress', registers }),
    knockEvicted: new Gauge({ name: 'nonstop_knock_sources_evicted', help: 'Progress records evicted by the source cap since start', registers }),
    knockThrottled: new Gauge({ name: 'nonstop_knock_sources_throttled', help: 'Sources (IPv6: /64s) that spent their knock budget and start no knock until it refills', registers }),
    windowsOpened: new Counter({ name: 'nonstop_knock_windows_opened_total', help: 'Firewall windows opened after a correct knock', registers }),
    sshConnections: new Counter({ name: 'nonstop_ssh_connections_total', help: 'TCP connections to the SSH port, by admission', labelNames: ['result'] as const, registers }),
    sshAuthFailures: new Counter({ name: 'nonstop_ssh_auth_failures_total', help: 'Failed SSH authentications', labelNames: ['method'] as const, registers }),
    sshRefused: new Counter({ name: 'nonstop_ssh_refused_requests_total', help: 'SSH requests refused, by kind', labelNames: ['kind'] as const, registers }),
    tunnelsOpen: new Gauge({ name: 'nonstop_tunnels_open', help: 'Broker tunnels currently forwarding the queue port', registers }),
    tunnelsReady: new Gauge({ name: 'nonstop_tunnels_ready', help: 'Tunnels whose queue connection is ready', registers }),
    requests: new Counter({ name: 'nonstop_gateway_requests_total', help: 'API requests, by method and status', labelNames: ['method', 'status'] as const, registers }),
    requestSeconds: new Histogram({
      name: 'nonstop_gateway_request_seconds',
      help: 'Time from enqueue to reply',
      labelNames: ['method'] as const,
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    redispatched: new Counter({ name: 'nonstop_gateway_redispatched_total', help: 'Requests re-sent on another tunnel after theirs dropped', registers }),
    // The public TLS certificate (certificate="server").
    certificateExpiry: certificateExpiryGauge(registers),
    // Its SSH host key, queue password and knock secret, dated by keygen (key-dates.json).
    keyExpiry: keyExpiryGauge(registers),
    brokerKeyExpiry: new Gauge({
      name: 'nonstop_ssh_key_expiry_timestamp_seconds',
      help: 'expiry-time= of each broker key in authorized_keys that sets one, by broker (the line comment) and key fingerprint, unix seconds',
      labelNames: ['broker', 'key'] as const,
      registers,
    }),
  };
}

/**
 * The broker keys' expiry-time= as authorized_keys now has them: called with every list the
 * gateway applies (at start and on each reload), so a key removed or renewed leaves no stale series.
 */
export function exportBrokerKeyExpiry(gauge: GatewayMetrics['brokerKeyExpiry'], keys: readonly AuthorizedKey[]): void {
  gauge.reset();
  for (const k of keys) {
    if (k.options.expiresAt !== undefined) gauge.set({ broker: k.comment, key: fingerprintOfBlob(k.key.getPublicSSH()) }, k.options.expiresAt);
  }
}

/**
 * What the app's admission control holds against its limits, read at each scrape: the
 * gateway's queue of taken-in, unanswered requests. Past a limit it refuses with 503
 * overloaded, so a ratio near 1 is the warning before clients see refusals.
 */
export function admissionMetrics(registry: Registry, admission: Pick<AdmissionControl, 'pending'>, limits: AdmissionLimits) {
  const registers = [registry];
  return {
    pendingRequests: new Gauge({ name: 'nonstop_gateway_pending_requests', help: 'Requests taken in by the app and not yet answered', registers, collect() { this.set(admission.pending.requests); } }),
    pendingBytes: new Gauge({ name: 'nonstop_gateway_pending_bytes', help: 'Body bytes (as declared) of requests taken in and not yet answered', registers, collect() { this.set(admission.pending.bytes); } }),
    maxPendingRequests: new Gauge({ name: 'nonstop_gateway_pending_requests_limit', help: 'MAX_PENDING_REQUESTS: past it requests are refused with 503 overloaded', registers, collect() { this.set(limits.maxPendingRequests); } }),
    maxPendingBytes: new Gauge({ name: 'nonstop_gateway_pending_bytes_limit', help: 'MAX_PENDING_BYTES: past it requests are refused with 503 overloaded', registers, collect() { this.set(limits.maxPendingBytes); } }),
  };
}

export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
