import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
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

  it('exports the earliest nextUpdate of a file holding one CRL per CA (a CA rotation), whichever comes first in the file', async () => {
    const lapsing = new Date(Date.UTC(2030, 0, 1));
    const other = await createCa('the next CA');
    const signingKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(other.keyPem), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    const short = (
      await x509.X509CrlGenerator.create({ issuer: new x509.X509Certificate(other.certPem).subject, thisUpdate: new Date(), nextUpdate: lapsing, entries: [], signingKey, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } })
    )
      .toString('pem')
      // The label OpenSSL reads, as keygen writes it (common/pki/crl.ts).
      .replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
    const keygens = await createCrl(ca, []);
    for (const file of [`${keygens}\n${short}\n`, `${short}\n${keygens}\n`]) {
      const registry = new Registry();
      crlExpiryGauge([registry]).track('ca', () => file);
      assert.equal(await sample(registry, 'nonstop_crl_expiry_timestamp_seconds', 'crl', 'ca'), seconds(lapsing));
    }
  });
});
