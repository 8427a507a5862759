import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/**
 * The deployment's private PKI: one CA that signs core's server certificate and each
 * broker's client certificate (mutual TLS on the private network), and self-signed
 * certificates for the public TLS endpoint when the operator brings none. ECDSA P-256:
 * fast to generate on first start, accepted by every TLS stack in use here.
 */
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']));
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  // Positive 128-bit serial: a first byte of 0x01-0x7f keeps the DER integer positive and
  // minimal (a leading 0x00 would be a non-minimal encoding, which strict parsers refuse).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

function validity(days: number, notBefore = new Date(Date.now() - 60_000)): { notBefore: Date; notAfter: Date } {
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * DAY_MS) };
}

export async function createCa(commonName: string, days = 3650): Promise<PemPair> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    ...validity(days),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

export interface LeafOptions {
  commonName: string;
  /** DNS names and IP addresses for the subjectAltName (servers). */
  altNames?: string[];
  usage: 'server' | 'client';
  days?: number;
  /** For tests: a certificate that is already expired. */
  notBefore?: Date;
}

async function importCaKey(keyPem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(keyPem);
  return await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
}

function altNameExtension(names: string[]): x509.SubjectAlternativeNameExtension {
  const entries = names.map((n) =>
    /^[0-9.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n },
  );
  return new x509.SubjectAlternativeNameExtension(entries);
}

/** A leaf certificate signed by `ca`. */
export async function issueCertificate(ca: PemPair, opts: LeafOptions): Promise<PemPair> {
  const keys = await keyPair();
  const caCert = new x509.X509Certificate(ca.certPem);
  const eku = opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([eku], false),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
  ];
  if (opts.altNames && opts.altNames.length > 0) extensions.push(altNameExtension(opts.altNames));
  const { notBefore, notAfter } = opts.notBefore
    ? { notBefore: opts.notBefore, notAfter: new Date(opts.notBefore.getTime() + (opts.days ?? 825) * DAY_MS) }
    : validity(opts.days ?? 825);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: await importCaKey(ca.keyPem),
    extensions,
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * Longest life of the public endpoint's generated certificate. Mozilla's TLS guidelines
 * (5.7) cap a server certificate at 366 days and scanners check it (sslyze's
 * maximum_certificate_lifespan); the gateway generates it once into its state volume, so
 * an operator who keeps the self-signed one replaces it within a year.
 */
export const SERVER_CERT_DAYS = 365;

/**
 * A self-signed server certificate for the public endpoint when none is provided. It
 * carries what RFC 5280 path validators (the WebPKI rules in Go, rustls/webpki, Python's
 * cryptography) require of a server certificate trusted directly: subject and authority
 * key identifiers (the AKI names its own key), key usage digitalSignature, serverAuth, a
 * subjectAltName for every name, CA false.
 */
export async function selfSignedServerCertificate(commonName: string, altNames: string[], days = SERVER_CERT_DAYS): Promise<PemPair> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    ...validity(days),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
      altNameExtension(altNames),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/** SHA-256 fingerprint of a PEM certificate, as operators compare them (AA:BB:...). */
export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}
