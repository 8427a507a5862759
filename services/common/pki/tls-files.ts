import { createPrivateKey, X509Certificate } from 'node:crypto';

/**
 * Checks on the TLS files a service follows while it runs (core's server certificate, the
 * broker's client certificate, the CA bundles and CRL files keygen rewrites on rotation),
 * so that a new file is applied only when it can be used and refused whole otherwise.
 */

/** A TLS file that cannot be used as it is; the message says why, without the key. */
export class TlsFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsFileError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const PEM_BLOCK = (label: string): RegExp => new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, 'g');

/** Each PEM certificate of a file (a leaf, or a CA bundle [new, old] during a CA rotation). */
export function pemCertificates(text: string): string[] {
  return (text.match(PEM_BLOCK('CERTIFICATE')) ?? []).map((b) => `${b}\n`);
}

/** Each PEM CRL of a file: one per CA while two CAs overlap (OpenSSL needs one per issuer). */
export function pemCrls(text: string): string[] {
  return (text.match(PEM_BLOCK('X509 CRL')) ?? []).map((b) => `${b}\n`);
}

/** The certificates of a CA file, parsed; a file with none, or one that does not parse, is refused. */
export function parseCaBundle(text: string): X509Certificate[] {
  const blocks = pemCertificates(text);
  if (blocks.length === 0) throw new TlsFileError('no PEM certificate in the CA file');
  return blocks.map((b) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(b);
    } catch (err) {
      throw new TlsFileError(`a CA certificate cannot be parsed: ${(err as Error).message}`);
    }
    if (!cert.ca) throw new TlsFileError(`${cert.subject} is not a CA certificate`);
    return cert;
  });
}

/**
 * A certificate and its private key, checked as a pair: the leaf parses, the key is its
 * key (a certificate written before its key, or the other way round, is a mismatch until
 * the second file lands), and, given the CA bundle, one of its CAs signed it.
 */
export function checkCertificatePair(certPem: string, keyPem: string, caText?: string): X509Certificate {
  const blocks = pemCertificates(certPem);
  if (blocks.length === 0) throw new TlsFileError('no PEM certificate in the certificate file');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(blocks[0]!);
  } catch (err) {
    throw new TlsFileError(`the certificate cannot be parsed: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new TlsFileError(`the private key cannot be parsed: ${(err as Error).message}`);
  }
  if (!matches) throw new TlsFileError('the private key is not the certificate\'s');
  if (caText !== undefined && !parseCaBundle(caText).some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    throw new TlsFileError(`the certificate (issuer ${cert.issuer}) is signed by no CA of the CA file`);
  }
  return cert;
}
