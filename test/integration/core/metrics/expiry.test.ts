import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createCa, issueCertificate } from '../../../../services/common/pki/certificates';
import { createCrl } from '../../../../services/common/pki/crl';
import { ClientIdentity } from '../../../../services/core/http/client-identity';
import { coreMetrics } from '../../../../services/core/metrics';
import { silentLogger } from '../../../support/logger';
import { opensslNotAfter } from '../../../support/openssl-dates';
import { tempDir } from '../../../support/tmp';

async function sample(registry: Registry, name: string, labels: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}


/**
 * Core's expiry gauges wired as services/core/main.ts wires them, on real files: the server
 * certificate read once, the CA and its CRL through ClientIdentity, which owns those files
 * and re-reads them when they change.
 */
describe('core expiry metrics', function () {
  this.timeout(20_000);
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => (tmp = tempDir('nonstop-core-expiry-')));
  afterEach(() => tmp.cleanup());

  it("exports the server certificate's, the CA's and the CRL's dates, and the new CA's after ClientIdentity reloads a rotated one", async () => {
    const files = { caFile: join(tmp.dir, 'ca.crt'), crlFile: join(tmp.dir, 'ca.crl'), namesFile: join(tmp.dir, 'brokers') };
    const oldCa = await createCa('old CA', 30);
    const server = await issueCertificate(oldCa, { commonName: 'core', altNames: ['core'], usage: 'server', days: 60 });
    const serverFile = join(tmp.dir, 'server.crt');
    writeFileSync(serverFile, server.certPem);
    writeFileSync(files.caFile, oldCa.certPem);
    writeFileSync(files.crlFile, await createCrl(oldCa, []));
    writeFileSync(files.namesFile, 'broker\n');

    const registry = new Registry();
    const metrics = coreMetrics(registry);
    const clients = await ClientIdentity.load(files, silentLogger());
    metrics.certificateExpiry.track('server', () => server.certPem);
    metrics.certificateExpiry.track('ca', () => clients.tlsOptions().ca);
    metrics.crlExpiry.track('ca', () => clients.tlsOptions().crl);

    const name = 'nonstop_certificate_expiry_timestamp_seconds';
    assert.equal(await sample(registry, name, '{certificate="server"}'), opensslNotAfter(readFileSync(serverFile, 'utf8')));
    assert.equal(await sample(registry, name, '{certificate="ca"}'), opensslNotAfter(readFileSync(files.caFile, 'utf8')));
    assert.equal(await sample(registry, 'nonstop_crl_expiry_timestamp_seconds', '{crl="ca"}'), Date.UTC(9999, 11, 31, 23, 59, 59) / 1000);

    // A new CA (and its CRL) written over the old: the gauge shows the CA in effect, so the
    // old one until ClientIdentity has reloaded, then the new one.
    const oldNotAfter = opensslNotAfter(readFileSync(files.caFile, 'utf8'));
    const newCa = await createCa('new CA', 3000);
    writeFileSync(files.caFile, newCa.certPem);
    writeFileSync(files.crlFile, await createCrl(newCa, []));
    const newNotAfter = opensslNotAfter(readFileSync(files.caFile, 'utf8'));
    assert.ok(newNotAfter > oldNotAfter + 2900 * 86_400, 'positive control: the rotated CA lives longer');
    assert.equal(await sample(registry, name, '{certificate="ca"}'), oldNotAfter);
    assert.equal(await clients.reload(), true);
    assert.equal(await sample(registry, name, '{certificate="ca"}'), newNotAfter);
  });
});
