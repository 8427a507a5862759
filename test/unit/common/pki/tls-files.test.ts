import assert from 'node:assert/strict';
import { createCa, issueCertificate, type PemPair } from '../../../../services/common/pki/certificates';
import { certificateSerial, CrlError, createCrl, readCrls } from '../../../../services/common/pki/crl';
import { checkCertificatePair, parseCaBundle, pemCertificates, pemCrls, TlsFileError } from '../../../../services/common/pki/tls-files';

describe('TLS files followed across a rotation', () => {
  let oldCa: PemPair;
  let newCa: PemPair;
  let oldLeaf: PemPair;
  let newLeaf: PemPair;

  before(async () => {
    oldCa = await createCa('old CA');
    newCa = await createCa('new CA');
    oldLeaf = await issueCertificate(oldCa, { commonName: 'broker', usage: 'client' });
    newLeaf = await issueCertificate(newCa, { commonName: 'broker', usage: 'client' });
  });

  describe('checkCertificatePair', () => {
    it('accepts a certificate with its own key, and with a bundle holding its CA', () => {
      assert.equal(checkCertificatePair(newLeaf.certPem, newLeaf.keyPem, newCa.certPem + oldCa.certPem).serialNumber.toLowerCase().replace(/^0+/, ''), certificateSerial(newLeaf.certPem));
    });

    it('refuses a certificate with another key (the gap between writing the two files)', () => {
      assert.throws(() => checkCertificatePair(newLeaf.certPem, oldLeaf.keyPem), TlsFileError);
    });

    it('refuses a certificate no CA of the bundle signed, and a file without a certificate', () => {
      assert.throws(() => checkCertificatePair(oldLeaf.certPem, oldLeaf.keyPem, newCa.certPem), TlsFileError);
      assert.throws(() => checkCertificatePair('', oldLeaf.keyPem), TlsFileError);
      assert.throws(() => checkCertificatePair(oldLeaf.certPem, 'not a key'), TlsFileError);
    });
  });

  describe('parseCaBundle', () => {
    it('reads each CA of a bundle [new, old] in order', () => {
      assert.deepEqual(parseCaBundle(newCa.certPem + oldCa.certPem).map((c) => c.subject), ['CN=new CA', 'CN=old CA']);
      assert.equal(pemCertificates(newCa.certPem + oldCa.certPem).length, 2);
    });

    it('refuses a leaf in place of a CA, and an empty file', () => {
      assert.throws(() => parseCaBundle(newLeaf.certPem), TlsFileError);
      assert.throws(() => parseCaBundle(''), TlsFileError);
    });
  });

  describe('readCrls (one list per CA while two CAs overlap)', () => {
    it('unites the serials of both lists and keeps one list per CA', async () => {
      const text = (await createCrl(newCa, [{ serial: certificateSerial(newLeaf.certPem), revokedAt: new Date() }])) + (await createCrl(oldCa, [{ serial: certificateSerial(oldLeaf.certPem), revokedAt: new Date() }]));
      const r = await readCrls(text, newCa.certPem + oldCa.certPem);
      assert.deepEqual([...r.revoked].sort(), [certificateSerial(newLeaf.certPem), certificateSerial(oldLeaf.certPem)].sort());
      assert.equal(r.crls.length, 2);
      assert.equal(pemCrls(text).length, 2);
    });

    it('refuses a bundle with a CA that has no list (OpenSSL would refuse every certificate of it)', async () => {
      await assert.rejects(readCrls(await createCrl(oldCa, []), newCa.certPem + oldCa.certPem), CrlError);
    });

    it('leaves out the list of a CA the bundle does not hold (between keygen\'s two writes)', async () => {
      const r = await readCrls((await createCrl(newCa, [])) + (await createCrl(oldCa, [])), oldCa.certPem);
      assert.equal(r.crls.length, 1);
    });

    it('refuses a list naming a trusted CA but signed by another key', async () => {
      const forger = await createCa('old CA');
      await assert.rejects(readCrls(await createCrl(forger, []), oldCa.certPem), CrlError);
    });
  });
});
