import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { certificateExpiryGauge, crlExpiryGauge } from '../../../../services/common/metrics/expiry';
import { createCa, issueCertificate, type PemPair } from '../../../../services/common/pki/certificates';
import { createCrl } from '../../../../services/common/pki/crl';
import { memoryLogger } from '../../../support/logger';

const seconds = (d: Date): number => d.getTime() / 1000;

/** The sample of `name` with `label="value"` in the registry's Prometheus text, or undefined. */
async function sample(registry: Registry, name: string, label: string, value: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}{${label}="${value}"}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('expiry gauges (nonstop_certificate_expiry_timestamp_seconds, nonstop_crl_expiry_timestamp_seconds)', () => {
  let ca: PemPair;
  const notBefore = new Date(Date.UTC(2032, 2, 3));
  let first: PemPair;
  let renewed: PemPair;

  before(async () => {
    ca = await createCa('gauge test CA');
    first = await issueCertificate(ca, { commonName: 'one', usage: 'server', notBefore, days: 10 });
    renewed = await issueCertificate(ca, { commonName: 'one', usage: 'server', notBefore, days: 400 });
  });

  it("exports each tracked certificate's notAfter under its role, in the scrape's text", async () => {
    const registry = new Registry();
    const gauge = certificateExpiryGauge([registry]);
    gauge.track('server', () => first.certPem);
    gauge.track('ca', () => ca.certPem);
    assert.equal(await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'server'), seconds(notBefore) + 10 * 86_400);
    const caNotAfter = await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'ca');
    // createCa: ten years from a minute ago.
    assert.ok(caNotAfter !== undefined && Math.abs(caNotAfter - (Date.now() / 1000 + 3650 * 86_400)) < 120, `ca notAfter ${caNotAfter}`);
  });

  it('shows a changed text at the next scrape: the owner re-read its file, nothing else reads it', async () => {
    const registry = new Registry();
    const gauge = certificateExpiryGauge([registry]);
    let text = first.certPem;
    let reads = 0;
    gauge.track('server', () => {
      reads++;
      return text;
    });
    assert.equal(await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'server'), seconds(notBefore) + 10 * 86_400);
    text = renewed.certPem;
    assert.equal(await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'server'), seconds(notBefore) + 400 * 86_400);
    assert.ok(reads >= 2, `the source was asked ${reads} times`);
  });

  it('stops exporting a date it can no longer read, and logs why, rather than keep the old one', async () => {
    const registry = new Registry();
    const gauge = certificateExpiryGauge([registry]);
    const { log, lines } = memoryLogger();
    let text = first.certPem;
    gauge.track('server', () => text, log);
    assert.ok((await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'server')) !== undefined, 'positive control: exported while readable');
    text = 'garbage';
    assert.equal(await sample(registry, 'nonstop_certificate_expiry_timestamp_seconds', 'certificate', 'server'), undefined);
    assert.ok(lines.some((l) => l.message === 'expiry cannot be read; not exported' && l.certificate === 'server'), JSON.stringify(lines));
  });

  it("exports a CRL's nextUpdate under crl=", async () => {
    const registry = new Registry();
    const crl = await createCrl(ca, []);
    crlExpiryGauge([registry]).track('ca', () => crl);
    assert.equal(await sample(registry, 'nonstop_crl_expiry_timestamp_seconds', 'crl', 'ca'), seconds(new Date(Date.UTC(9999, 11, 31, 23, 59, 59))));
  });
});
