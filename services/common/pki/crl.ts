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

const PEM_CRL = /-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The CRLs of a CA bundle: while a CA is rotated, core trusts two CAs (the bundle [new, old])
 * and OpenSSL, checking CRLs, refuses every certificate of an issuer it holds no CRL for,
 * so the CRL file holds one list per CA. Each CA of the bundle must have its list, checked
 * (issuer and signature); a list whose issuer is in no CA of the bundle is left out and not
 * used: keygen writes the CRL file before the CA file when a CA is added and after it when
 * one is removed, so a reader between the two writes sees a list of a CA it does not trust
 * yet (or any more), never a trusted CA without its list.
 */
export async function readCrls(crlText: string, caText: string): Promise<{ revoked: Set<string>; crls: string[] }> {
  const cas = (caText.match(PEM_CERTIFICATE) ?? []).map((pem) => new x509.X509Certificate(pem));
  if (cas.length === 0) throw new CrlError('the CA file holds no certificate');
  const blocks = crlText.match(PEM_CRL) ?? [];
  if (blocks.length === 0) throw new CrlError('not a CRL: no PEM "X509 CRL" block');
  const revoked = new Set<string>();
  const crls: string[] = [];
  const covered = new Set<x509.X509Certificate>();
  for (const block of blocks) {
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(block);
    } catch (err) {
      throw new CrlError(`not a CRL: ${(err as Error).message}`);
    }
    const issuers = cas.filter((ca) => ca.subject === crl.issuer);
    if (issuers.length === 0) continue;
    let signer: x509.X509Certificate | undefined;
    for (const ca of issuers) if (await crl.verify({ publicKey: ca.publicKey })) signer = ca;
    if (!signer) throw new CrlError(`a list naming ${crl.issuer} is not signed by that CA`);
    covered.add(signer);
    crls.push(`${block}\n`);
    for (const e of crl.entries) revoked.add(normalizeSerial(e.serialNumber));
  }
  const missing = cas.filter((ca) => !covered.has(ca));
  if (missing.length > 0) throw new CrlError(`no revocation list of ${missing.map((ca) => `${ca.subject} (serial ${normalizeSerial(ca.serialNumber)})`).join(', ')}`);
  return { revoked, crls };
}
