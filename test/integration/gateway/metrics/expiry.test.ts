import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { exportBrokerKeyExpiry, gatewayMetrics } from '../../../../services/gateway/metrics';
import { parseAuthorizedKeys, type AuthorizedKey } from '../../../../services/gateway/ssh/authorized-keys';
import { followAuthorizedKeys } from '../../../../services/gateway/ssh/authorized-keys-file';
import { ensureServerCertificate } from '../../../../services/gateway/tls/certificate';
import { silentLogger } from '../../../support/logger';
import { writeKeyPair } from '../../../support/ssh-fixtures';
import { opensslNotAfter } from '../../../support/openssl-dates';
import { tempDir } from '../../../support/tmp';
import { waitFor } from '../../../support/wait';

/** Every sample of `name` in the scrape text, keyed by its label set as written. */
async function samples(registry: Registry, name: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    out.set(line.slice(name.length, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** OpenSSH's own fingerprint of a public key file: the oracle for the `key` label. */
const sshFingerprint = (publicPath: string): string => execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicPath], { encoding: 'utf8' }).split(' ')[1]!;


describe('gateway expiry metrics', function () {
  this.timeout(20_000);
  let tmp: ReturnType<typeof tempDir>;
  let stop: (() => void) | undefined;

  beforeEach(() => (tmp = tempDir('nonstop-gateway-expiry-')));
  afterEach(() => {
    stop?.();
    stop = undefined;
    tmp.cleanup();
  });

  it("exports the public TLS certificate's notAfter as OpenSSL reads it from the file nginx serves", async () => {
    const certFile = join(tmp.dir, 'server.crt');
    const registry = new Registry();
    const metrics = gatewayMetrics(registry);
    // As services/gateway/main.ts wires it: the certificate generated on first start.
    const pem = await ensureServerCertificate(certFile, join(tmp.dir, 'server.key'), ['localhost'], silentLogger());
    metrics.certificateExpiry.track('server', () => pem);
    assert.deepEqual(await samples(registry, 'nonstop_certificate_expiry_timestamp_seconds'), new Map([['{certificate="server"}', opensslNotAfter(readFileSync(certFile, 'utf8'))]]));
  });

  it("exports each broker key's expiry-time= by broker and OpenSSH fingerprint, and follows authorized_keys as it is rewritten", async () => {
    const a = writeKeyPair(tmp.dir, 'a', 'broker-a');
    const b = writeKeyPair(tmp.dir, 'b', 'broker-b');
    const path = join(tmp.dir, 'authorized_keys');
    const registry = new Registry();
    const metrics = gatewayMetrics(registry);
    const aLabels = `{broker="broker-a",key="${sshFingerprint(a.publicPath)}"}`;
    const bLabels = `{broker="broker-b",key="${sshFingerprint(b.publicPath)}"}`;

    // Broker b's key sets no expiry-time: it has no series, rather than a made-up date.
    const first = `restrict,port-forwarding,expiry-time="20310506Z" ${a.publicKey}\nrestrict,port-forwarding ${b.publicKey}\n`;
    writeFileSync(path, first);
    // As at start: the list the gateway read before following the file.
    exportBrokerKeyExpiry(metrics.brokerKeyExpiry, parseAuthorizedKeys(first));
    assert.deepEqual(await samples(registry, 'nonstop_ssh_key_expiry_timestamp_seconds'), new Map([[aLabels, Date.UTC(2031, 4, 6) / 1000]]));

    // As services/gateway/main.ts follows the file: every applied list replaces the series.
    let applied = 0;
    stop = followAuthorizedKeys(path, (keys: readonly AuthorizedKey[]) => {
      exportBrokerKeyExpiry(metrics.brokerKeyExpiry, keys);
      applied++;
    }, silentLogger(), 100);
    writeFileSync(path, `restrict,port-forwarding,expiry-time="203201021530Z" ${b.publicKey}\n`);
    await waitFor('the rewritten list applied', () => applied === 1);
    assert.deepEqual(await samples(registry, 'nonstop_ssh_key_expiry_timestamp_seconds'), new Map([[bLabels, Date.UTC(2032, 0, 2, 15, 30) / 1000]]), "broker a's key withdrawn, broker b's renewed with an expiry");
  });
});
