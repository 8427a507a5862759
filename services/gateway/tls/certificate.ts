import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from '../../common/log/logger';
import { ConfigError } from '../../common/errors/config-error';
import { certificateFingerprint, selfSignedServerCertificate } from '../../common/pki/certificates';
import { writeIfAbsent } from '../../common/pki/files';
import { readFileSync } from 'node:fs';

/**
 * The public endpoint's certificate: the operator's when both files are there, otherwise
 * a self-signed one generated on first start into the gateway's state volume (and kept).
 * One file without the other is a configuration error: guessing would be worse. Returns the
 * certificate (PEM) in use.
 */
export async function ensureServerCertificate(certFile: string, keyFile: string, names: string[], log: Logger): Promise<string> {
  const haveCert = existsSync(certFile);
  const haveKey = existsSync(keyFile);
  if (haveCert !== haveKey) {
    const missing = haveCert ? `TLS_KEY_FILE=${JSON.stringify(keyFile)}` : `TLS_CERT_FILE=${JSON.stringify(certFile)}`;
    throw new ConfigError([`${missing}: missing while its pair exists (provide both or neither)`]);
  }
  if (!haveCert) {
    const pair = await selfSignedServerCertificate(names[0] ?? hostname(), names);
    writeIfAbsent(keyFile, pair.keyPem, 0o600);
    writeIfAbsent(certFile, pair.certPem, 0o644);
    log.warn('generated a self-signed TLS certificate; provide TLS_CERT_FILE/TLS_KEY_FILE for production', {
      fingerprint: certificateFingerprint(pair.certPem),
    });
    // What is on disk now: a concurrent first start may have written its pair before ours.
    return readFileSync(certFile, 'utf8');
  }
  const certPem = readFileSync(certFile, 'utf8');
  log.info('using TLS certificate', { fingerprint: certificateFingerprint(certPem) });
  return certPem;
}
