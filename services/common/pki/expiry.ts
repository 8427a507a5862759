import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { pemCrls } from './tls-files';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * When the certificates and revocation lists a tier holds stop working, as unix seconds: what
 * the `*_expiry_timestamp_seconds` gauges export, so an alert fires days before a handshake
 * would fail (deploy/monitoring/rules/nonstop.rules.yml).
 */

/** A text that holds no certificate (or CRL) that can be read. */
export class CertificateExpiryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateExpiryError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The earliest notAfter of the certificates in a PEM text, in unix seconds. A file may hold a
 * chain (leaf, then intermediates) or, while a CA is rotated, two CAs: the earliest date is
 * when something in the file first stops verifying, which is the date to be warned about.
 */
export function certificatesExpiry(pem: string): number {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new CertificateExpiryError('no PEM certificate in the file');
  let earliest = Infinity;
  for (const block of blocks) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      throw new CertificateExpiryError(`a certificate cannot be parsed: ${(err as Error).message}`);
    }
    earliest = Math.min(earliest, Math.floor(cert.validToDate.getTime() / 1000));
  }
  return earliest;
}

/**
 * The earliest nextUpdate of the CRLs in a PEM text, in unix seconds, or undefined when none
 * has one (X.509 allows leaving it out). OpenSSL refuses every certificate of an issuer once
 * its CRL's nextUpdate has passed, so it is an expiry like a certificate's. A file holds one
 * CRL per trusted CA (two during a CA rotation): the first to lapse is the date that matters.
 * keygen writes 9999-12-31 (common/pki/crl.ts), which no alert window reaches.
 */
export function crlExpiry(pem: string): number | undefined {
  const blocks = pemCrls(pem);
  if (blocks.length === 0) throw new CertificateExpiryError('no PEM CRL in the file');
  let earliest: number | undefined;
  for (const block of blocks) {
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(block);
    } catch (err) {
      throw new CertificateExpiryError(`the CRL cannot be parsed: ${(err as Error).message}`);
    }
    if (crl.nextUpdate === undefined) continue;
    const at = Math.floor(crl.nextUpdate.getTime() / 1000);
    earliest = earliest === undefined ? at : Math.min(earliest, at);
  }
  return earliest;
}
