import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { createCa, issueCertificate, type PemPair } from '../../../../services/common/pki/certificates';
import { createCrl } from '../../../../services/common/pki/crl';
import { CertificateExpiryError, certificatesExpiry, crlExpiry } from '../../../../services/common/pki/expiry';

const DAY_MS = 86_400_000;
const seconds = (d: Date): number => d.getTime() / 1000;

describe('certificatesExpiry', () => {
  let ca: PemPair;
  before(async () => {
    ca = await createCa('expiry test CA');
  });

  it("is the certificate's notAfter in unix seconds", async () => {
    const notBefore = new Date(Date.UTC(2031, 4, 6, 7, 8, 9));
    const leaf = await issueCertificate(ca, { commonName: 'core', usage: 'server', notBefore, days: 90 });
    assert.equal(certificatesExpiry(leaf.certPem), seconds(notBefore) + 90 * 86_400);
  });

  it('is the earliest notAfter when the file holds several certificates, whichever comes first', async () => {
    const notBefore = new Date(Date.UTC(2031, 0, 1));
    const later = await issueCertificate(ca, { commonName: 'later', usage: 'client', notBefore, days: 300 });
    const sooner = await issueCertificate(ca, { commonName: 'sooner', usage: 'client', notBefore, days: 30 });
    const expected = seconds(notBefore) + 30 * 86_400;
    assert.equal(certificatesExpiry(`${later.certPem}\n${sooner.certPem}`), expected);
    assert.equal(certificatesExpiry(`${sooner.certPem}${later.certPem}`), expected);
  });

  it('refuses a text without a certificate, and one whose certificate does not parse, with CertificateExpiryError', () => {
    assert.throws(() => certificatesExpiry('not a certificate'), CertificateExpiryError);
    assert.throws(() => certificatesExpiry('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), CertificateExpiryError);
  });
});

describe('crlExpiry', () => {
  it("is the nextUpdate keygen's CRL carries: 9999-12-31T23:59:59Z, RFC 5280's no well-defined expiry", async () => {
    const ca = await createCa('crl test CA');
    assert.equal(crlExpiry(await createCrl(ca, [])), seconds(new Date(Date.UTC(9999, 11, 31, 23, 59, 59))));
  });

  it("is a CRL's nearer nextUpdate when it has one, and undefined when it has none", async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
    const keys = await webcrypto.subtle.generateKey(alg, false, ['sign', 'verify']);
    const thisUpdate = new Date(Date.UTC(2031, 1, 1));
    const sign = async (nextUpdate?: Date): Promise<string> => {
      const crl = await x509.X509CrlGenerator.create({ issuer: 'CN=crl test', thisUpdate, ...(nextUpdate ? { nextUpdate } : {}), signingAlgorithm: alg, signingKey: keys.privateKey, entries: [] });
      return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
    };
    const nextUpdate = new Date(thisUpdate.getTime() + 7 * DAY_MS);
    assert.equal(crlExpiry(await sign(nextUpdate)), seconds(nextUpdate));
    assert.equal(crlExpiry(await sign()), undefined);
  });

  it('refuses a text that is no CRL with CertificateExpiryError', () => {
    assert.throws(() => crlExpiry('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n'), CertificateExpiryError);
  });
});
