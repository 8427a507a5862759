import { existsSync, readFileSync } from 'node:fs';
import type { PemPair } from '../common/pki/certificates';
import { previousOf, replaceFile } from '../common/pki/files';
import { createCrl, normalizeSerial, readCrls, type RevokedCertificate } from '../common/pki/crl';
import { pemCrls } from '../common/pki/tls-files';
import type { KeyLayout } from './layout';

/**
 * The CAs core trusts, newest first: the deployment CA and, while a CA rotation overlaps
 * (`rotate ca` until `retire ca`), the previous one.
 */
export function deploymentCas(L: KeyLayout, current: PemPair): PemPair[] {
  const cas = [current];
  const cert = previousOf(L.pki.caCert);
  const key = previousOf(L.pki.caKey);
  if (existsSync(cert) && existsSync(key)) cas.push({ certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') });
  return cas;
}

/**
 * What the CRL needs of a broker in pki/brokers.json (services/keygen/brokers.ts, which
 * writes the CRL through this module: named here by shape, not imported back).
 */
export interface IssuedBroker {
  certSerial: string;
  revokedAt?: string;
}

/**
 * Certificates a rotation retired (core's old server certificate, a broker's old client
 * certificate), in pki/retired.json, each with when: the CRL lists them at that date.
 */
export interface RetiredCertificate {
  serial: string;
  role: 'server' | 'client';
  /** The broker's name, for a client certificate. */
  broker?: string;
  retiredAt: string;
}

export const retiredFile = (L: KeyLayout): string => `${L.pki.dir}/retired.json`;

export function loadRetired(L: KeyLayout): RetiredCertificate[] {
  const path = retiredFile(L);
  if (!existsSync(path)) return [];
  return (JSON.parse(readFileSync(path, 'utf8')) as { certificates?: RetiredCertificate[] }).certificates ?? [];
}

export function saveRetired(L: KeyLayout, certificates: readonly RetiredCertificate[]): void {
  replaceFile(retiredFile(L), `${JSON.stringify({ certificates }, null, 2)}\n`, 0o600);
}

/**
 * What the CRL lists: every revoked broker's certificate, every certificate retired by a
 * rotation (a broker's old client certificate, core's old server certificate). Serials are
 * random 128-bit numbers, so one list per CA can hold them all without naming another CA's.
 */
export function revokedCertificates(brokers: readonly IssuedBroker[], retired: readonly RetiredCertificate[]): RevokedCertificate[] {
  const out = new Map<string, RevokedCertificate>();
  const add = (serial: string, at: string): void => void out.set(normalizeSerial(serial), { serial, revokedAt: new Date(at) });
  for (const b of brokers) if (b.revokedAt) add(b.certSerial, b.revokedAt);
  for (const r of retired) add(r.serial, r.retiredAt);
  return [...out.values()];
}

/**
 * Core's CRL file: one list per CA in `cas` (newest first), as OpenSSL wants one for every
 * issuer it trusts. Re-signed only when the revoked set or the CAs changed, so an unchanged
 * run changes no file and core reloads nothing.
 */
export async function writeCrlFile(L: KeyLayout, brokers: readonly IssuedBroker[], cas: readonly PemPair[]): Promise<void> {
  const revoked = revokedCertificates(brokers, loadRetired(L));
  const want = new Set(revoked.map((r) => normalizeSerial(r.serial)));
  if (existsSync(L.core.crl)) {
    const text = readFileSync(L.core.crl, 'utf8');
    const have = await readCrls(text, cas.map((c) => c.certPem).join('')).catch(() => undefined);
    if (have && pemCrls(text).length === cas.length && have.revoked.size === want.size && [...want].every((s) => have.revoked.has(s))) return;
  }
  const lists = await Promise.all(cas.map((ca) => createCrl(ca, revoked)));
  replaceFile(L.core.crl, lists.join(''), 0o644);
}
