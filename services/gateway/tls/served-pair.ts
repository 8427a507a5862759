import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from '../../common/log/logger';
import { certificateFingerprint } from '../../common/pki/certificates';
import { checkCertificatePair, TlsFileError } from '../../common/pki/tls-files';

/** Checks the pair as every tier's certificate follower does (common/pki/tls-files.ts); its fingerprint. */
const checkServerPair = (certPem: string, keyPem: string): string => {
  checkCertificatePair(certPem, keyPem);
  return certificateFingerprint(certPem);
};

/**
 * The certificate and key nginx serves on the public port, followed while the gateway runs:
 * an operator's new certificate or an ACME renewal written over TLS_CERT_FILE/TLS_KEY_FILE is
 * checked, then served after a graceful nginx reload (SIGHUP to its master: new workers take
 * new connections, old ones finish the requests they hold), without a restart.
 *
 * nginx never reads the operator's files: it reads one copy holding both (ssl_certificate and
 * ssl_certificate_key name the same file), written by this module only after the pair has
 * been checked, and replaced by one rename. So a pair caught half-written (the certificate
 * renewed, the key not yet), one that does not parse, or one whose key is not the
 * certificate's, never reaches nginx, not even when nginx restarts: it is refused with one
 * log line and the pair served before stays.
 */

/** How often TLS_CERT_FILE and TLS_KEY_FILE are read: a renewal is served within this. */
export const SERVER_PAIR_POLL_MS = 1000;

/** The file nginx's ssl_certificate and ssl_certificate_key both name, under nginx's run directory. */
export function servedPairPath(nginxRunDir: string): string {
  return join(nginxRunDir, 'tls', 'server.pem');
}

/** Writes the checked pair for nginx: a temporary file, then one rename, so nginx sees old or new. */
function installPair(path: string, certPem: string, keyPem: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${certPem.trimEnd()}\n${keyPem.trimEnd()}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export interface ServedPairOptions {
  certFile: string;
  keyFile: string;
  /** servedPairPath(nginx's run directory). */
  servedFile: string;
  /** Makes nginx read servedFile again (SIGHUP to its master); false when nginx is not running. */
  reload: () => boolean;
  log: Logger;
}

export class ServedPair {
  private current: { certPem: string; keyPem: string; fingerprint: string };
  /** The texts last looked at, served or refused: each pair is reported once. */
  private lastSeen: string;
  private lastErrorCode: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** Installs the pair the gateway starts with (checked like any later one, but fatal here). */
  constructor(
    private readonly o: ServedPairOptions,
    certPem: string,
    keyPem: string,
  ) {
    const fingerprint = checkServerPair(certPem, keyPem);
    installPair(o.servedFile, certPem, keyPem);
    this.current = { certPem, keyPem, fingerprint };
    this.lastSeen = `${certPem}\0${keyPem}`;
  }

  /** The certificate nginx is serving (or will, once its reload is done), PEM. */
  get certPem(): string {
    return this.current.certPem;
  }

  get fingerprint(): string {
    return this.current.fingerprint;
  }

  /** Checks every `intervalMs` until stop(); the timer does not keep the process alive. */
  start(intervalMs = SERVER_PAIR_POLL_MS): void {
    this.stop();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Reads both files now; serves a new valid pair, refuses an invalid one (once). */
  check(): void {
    let certPem: string;
    let keyPem: string;
    try {
      certPem = readFileSync(this.o.certFile, 'utf8');
      keyPem = readFileSync(this.o.keyFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
      if (code !== this.lastErrorCode) {
        this.lastErrorCode = code;
        this.o.log.warn('TLS certificate or key unreadable; still serving the last good pair', { certFile: this.o.certFile, keyFile: this.o.keyFile, code, fingerprint: this.current.fingerprint });
      }
      return;
    }
    this.lastErrorCode = undefined;
    const seen = `${certPem}\0${keyPem}`;
    if (seen === this.lastSeen) return;
    this.lastSeen = seen;
    let fingerprint: string;
    try {
      fingerprint = checkServerPair(certPem, keyPem);
    } catch (err) {
      if (!(err instanceof TlsFileError)) throw err;
      // Also what a renewal written one file at a time looks like between its two writes:
      // the next check, once both are written, serves it.
      this.o.log.warn('TLS certificate refused; still serving the last good pair', { certFile: this.o.certFile, keyFile: this.o.keyFile, err: err.message, fingerprint: this.current.fingerprint });
      return;
    }
    installPair(this.o.servedFile, certPem, keyPem);
    const previous = this.current.fingerprint;
    this.current = { certPem, keyPem, fingerprint };
    // Not running (between restarts): the supervisor's next start reads the new file anyway.
    const signalled = this.o.reload();
    this.o.log.info('TLS certificate reloaded', { fingerprint, previous, nginxSignalled: signalled });
  }
}
