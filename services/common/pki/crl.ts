import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { PemPair } from './certificates';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * The deployment CA's certificate revocation list: which broker client certificates core
 * must refuse although the CA signed them, so one broker is cut off without a new CA.
 * keygen writes it (revoke-broker), core reads it at start and whenever it changes.
 *
 * Its nextUpdate is 9999-12-31T23:59:59Z, RFC 5280's "no well-defined expiration": OpenSSL
 * (behind node's tls `crl`) refuses every certificate once a CRL's nextUpdate has passed,
 * and nothing here re-signs the list on a schedule, so a nearer date would be a time at
 * which every broker is locked out. The list holds until replaced. (Leaving nextUpdate
 * out, as X.509 allows, makes @peculiar/x509 read the list as empty.)
 */
const NO_WELL_DEFINED_EXPIRY = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface RevokedCertificate {
  /** Hex serial, as certificateSerial() gives it. */
  serial: string;
  revokedAt: Date;
}

/** A serial in one spelling: lowercase hex without leading zeros (node prints uppercase, x509 lowercase). */
export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

/** The certificate's serial number, normalized. */
export function certificateSerial(certPem: string): string {
  return normalizeSerial(new X509Certificate(certPem).serialNumber);
}

/** The certificate's subject common name, or undefined. */
export function certificateCommonName(certPem: string): string | undefined {
  return /^CN=(.*)$/m.exec(new X509Certificate(certPem).subject)?.[1];
}

/** A CRL signed by `ca` listing `revoked` (possibly none), as PEM. */
export async function createCrl(ca: PemPair, revoked: readonly RevokedCertificate[], thisUpdate = new Date()): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), ALG, false, ['sign']);
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subject,
    thisUpdate,
    nextUpdate: NO_WELL_DEFINED_EXPIRY,
    signingAlgorithm: ALG,
    signingKey,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert, false)],
    entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.revokedAt, reason: x509.X509CrlReason.keyCompromise })),
  });
  // OpenSSL reads only the "X509 CRL" PEM label; toString('pem') writes "CRL".
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
}

/** A CRL that cannot be used: not PEM, not signed by the CA, or issued by another. */
export class CrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CrlError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** The serials a CRL revokes, after checking it is the CA's (issuer and signature). */
export async function readCrl(crlPem: string, caCertPem: string): Promise<Set<string>> {
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(crlPem);
  } catch (err) {
    throw new CrlError(`not a CRL: ${(err as Error).message}`);
  }
  const caCert = new x509.X509Certificate(caCertPem);
  if (crl.issuer !== caCert.subject) throw new CrlError(`issued by ${crl.issuer}, not by the CA (${caCert.subject})`);
  if (!(await crl.verify({ publicKey: caCert.publicKey }))) throw new CrlError('its signature is not the CA\'s');
  return new Set(crl.entries.map((e) => normalizeSerial(e.serialNumber)));
}
