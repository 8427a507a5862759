import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

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
 * A CRL's nextUpdate in unix seconds, or undefined when it has none (X.509 allows leaving it
 * out). OpenSSL refuses every certificate once a CRL's nextUpdate has passed, so it is an
 * expiry like a certificate's; keygen writes 9999-12-31 (common/pki/crl.ts), which no alert
 * window reaches.
 */
export function crlExpiry(pem: string): number | undefined {
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(pem);
  } catch (err) {
    throw new CertificateExpiryError(`the CRL cannot be parsed: ${(err as Error).message}`);
  }
  return crl.nextUpdate === undefined ? undefined : Math.floor(crl.nextUpdate.getTime() / 1000);
}
