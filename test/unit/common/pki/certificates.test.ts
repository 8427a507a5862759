import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import {
  certificateFingerprint,
  createCa,
  issueCertificate,
  selfSignedServerCertificate,
  SERVER_CERT_DAYS,
  type PemPair,
} from '../../../../services/common/pki/certificates';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 86_400_000;

function keyUsages(certPem: string): { flags: number; critical: boolean } {
  const ext = new x509.X509Certificate(certPem).getExtension(x509.KeyUsagesExtension);
  assert.ok(ext, 'keyUsage extension present');
  return { flags: ext.usages, critical: ext.critical };
}

function basicConstraints(certPem: string): { ca: boolean; pathLength: number | undefined; critical: boolean } {
  const ext = new x509.X509Certificate(certPem).getExtension(x509.BasicConstraintsExtension);
  assert.ok(ext, 'basicConstraints extension present');
  return { ca: ext.ca, pathLength: ext.pathLength, critical: ext.critical };
}

describe('createCa', () => {
  let ca: PemPair;
  before(async () => {
    ca = await createCa('Nonstop test CA');
  });

  it('makes a self-signed CA certificate whose private key matches', () => {
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, 'CN=Nonstop test CA');
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey));
    assert.ok(cert.checkPrivateKey(createPrivateKey(ca.keyPem)));
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  });

  it('limits the CA to signing certificates, with no intermediates below it', () => {
    const bc = basicConstraints(ca.certPem);
    assert.deepEqual(bc, { ca: true, pathLength: 0, critical: true });
    const ku = keyUsages(ca.certPem);
    assert.equal(ku.flags, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku.critical, true);
  });

  it('is valid now and for the asked number of days', () => {
    const cert = new X509Certificate(ca.certPem);
    const from = cert.validFromDate.getTime();
    const to = cert.validToDate.getTime();
    assert.ok(from <= Date.now() && Date.now() < to);
    assert.equal(Math.round((to - from) / DAY_MS), 3650);
  });

  it('gives each CA a different key and serial', async () => {
    const other = await createCa('Nonstop test CA');
    assert.notEqual(new X509Certificate(other.certPem).serialNumber, new X509Certificate(ca.certPem).serialNumber);
    assert.notEqual(other.keyPem, ca.keyPem);
  });
});

describe('issueCertificate', () => {
  let ca: PemPair;
  let caCert: X509Certificate;
  before(async () => {
    ca = await createCa('Nonstop test CA');
    caCert = new X509Certificate(ca.certPem);
  });

  it('issues a server certificate signed by the CA, for server authentication only', async () => {
    const leaf = await issueCertificate(ca, { commonName: 'core', altNames: ['core', 'localhost', '127.0.0.1', '::1'], usage: 'server' });
    const cert = new X509Certificate(leaf.certPem);
    assert.ok(cert.checkIssued(caCert));
    assert.ok(cert.verify(caCert.publicKey));
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, 'CN=core');
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
    assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.keyPem)));
  });

  it('puts DNS names and IP addresses in the subjectAltName', async () => {
    const leaf = await issueCertificate(ca, { commonName: 'core', altNames: ['core', 'core.internal', '10.1.2.3', '::1'], usage: 'server' });
    const cert = new X509Certificate(leaf.certPem);
    const san = cert.subjectAltName ?? '';
    for (const entry of ['DNS:core', 'DNS:core.internal', 'IP Address:10.1.2.3', 'IP Address:0:0:0:0:0:0:0:1']) {
      assert.ok(san.split(', ').includes(entry), `${entry} in ${san}`);
    }
    assert.equal(cert.checkHost('core.internal'), 'core.internal');
    assert.equal(cert.checkIP('10.1.2.3'), '10.1.2.3');
    assert.equal(cert.checkHost('elsewhere.example'), undefined);
  });

  it('issues a client certificate for client authentication only, without altNames', async () => {
    const leaf = await issueCertificate(ca, { commonName: 'broker-1', usage: 'client' });
    const cert = new X509Certificate(leaf.certPem);
    assert.ok(cert.checkIssued(caCert));
    assert.ok(cert.verify(caCert.publicKey));
    assert.deepEqual(cert.keyUsage, [CLIENT_AUTH]);
    assert.equal(cert.subjectAltName, undefined);
  });

  it('marks leaves as non-CA with a digital-signature key usage', async () => {
    const leaf = await issueCertificate(ca, { commonName: 'broker-1', usage: 'client' });
    assert.equal(basicConstraints(leaf.certPem).ca, false);
    const ku = keyUsages(leaf.certPem);
    assert.ok((ku.flags & x509.KeyUsageFlags.digitalSignature) !== 0);
    assert.equal(ku.flags & x509.KeyUsageFlags.keyCertSign, 0);
  });

  it('is not verified by another CA', async () => {
    const other = new X509Certificate((await createCa('Other CA')).certPem);
    const leaf = new X509Certificate((await issueCertificate(ca, { commonName: 'core', usage: 'server' })).certPem);
    assert.equal(leaf.verify(other.publicKey), false);
    assert.equal(leaf.checkIssued(other), false);
  });

  it('makes an already expired certificate when notBefore is in the past', async () => {
    const notBefore = new Date(Date.now() - 10 * DAY_MS);
    const leaf = await issueCertificate(ca, { commonName: 'old', usage: 'client', notBefore, days: 1 });
    const cert = new X509Certificate(leaf.certPem);
    assert.equal(Math.floor(cert.validFromDate.getTime() / 1000), Math.floor(notBefore.getTime() / 1000));
    assert.ok(cert.validToDate.getTime() < Date.now(), 'expired');
    assert.ok(cert.checkIssued(caCert));
  });

  it('uses the default lifetime of 825 days', async () => {
    const cert = new X509Certificate((await issueCertificate(ca, { commonName: 'core', usage: 'server' })).certPem);
    assert.equal(Math.round((cert.validToDate.getTime() - cert.validFromDate.getTime()) / DAY_MS), 825);
  });
});

describe('selfSignedServerCertificate', () => {
  it('makes a self-signed server certificate for the given names', async () => {
    const pair = await selfSignedServerCertificate('gateway', ['localhost', '127.0.0.1']);
    const cert = new X509Certificate(pair.certPem);
    assert.ok(cert.verify(cert.publicKey));
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.ok(cert.checkPrivateKey(createPrivateKey(pair.keyPem)));
  });

  it('lives 365 days and names its own key in the AKI, as path validators require', async () => {
    const pem = (await selfSignedServerCertificate('gateway', ['localhost'])).certPem;
    const cert = new X509Certificate(pem);
    assert.equal(Math.round((cert.validToDate.getTime() - cert.validFromDate.getTime()) / DAY_MS), SERVER_CERT_DAYS);
    assert.ok(SERVER_CERT_DAYS <= 365);
    const parsed = new x509.X509Certificate(pem);
    const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension);
    const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension);
    assert.ok(ski && aki, 'both key identifiers present');
    assert.equal(aki.keyId, ski.keyId);
    const usage = parsed.getExtension(x509.KeyUsagesExtension);
    assert.ok(usage && usage.usages & x509.KeyUsageFlags.digitalSignature);
  });
});

describe('certificateFingerprint', () => {
  it('gives the colon-separated SHA-256 of the DER certificate', async () => {
    const { certPem } = await createCa('fp');
    const fp = certificateFingerprint(certPem);
    assert.match(fp, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const der = new X509Certificate(certPem).raw;
    const { createHash } = await import('node:crypto');
    assert.equal(fp.replaceAll(':', '').toLowerCase(), createHash('sha256').update(der).digest('hex'));
  });
});
