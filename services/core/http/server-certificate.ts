import { readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors/config-error';
import type { Logger } from '../../common/log/logger';
import { normalizeSerial } from '../../common/pki/crl';
import { checkCertificatePair, TlsFileError } from '../../common/pki/tls-files';

export interface ServerCertificateFiles {
  /** TLS_CERT_FILE */
  certFile: string;
  /** TLS_KEY_FILE */
  keyFile: string;
}

/** The pair core presents, and its serial (logged on reload: what brokers now see). */
export interface ServerPair {
  cert: string;
  key: string;
  serial: string;
}

/**
 * Core's server certificate and key, followed like its client identity files: when keygen
 * rotates them (`nonstop-keygen rotate core-cert`) the new pair is served on the next
 * handshakes (setSecureContext) while connections already open keep the one they
 * negotiated. The two files are rewritten one after the other, so a poll can see a
 * certificate with the other key: such a pair is not applied, and is logged (one line) only
 * when the same texts are still mismatched on the next poll — a real mistake, not the gap
 * between two writes. A pair that cannot be used is never applied; core keeps serving the
 * last good one.
 */
export class ServerCertificate {
  private pair: ServerPair;
  private refused: { cert: string; key: string; logged: boolean } | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly files: ServerCertificateFiles,
    pair: ServerPair,
    private readonly log: Logger,
  ) {
    this.pair = pair;
  }

  /** Reads and checks the pair; a problem is a ConfigError naming the variables. */
  static load(files: ServerCertificateFiles, log: Logger): ServerCertificate {
    const texts = ServerCertificate.readTexts(files);
    try {
      return new ServerCertificate(files, ServerCertificate.check(texts), log);
    } catch (err) {
      if (err instanceof TlsFileError) throw new ConfigError([`TLS_CERT_FILE=${JSON.stringify(files.certFile)} with TLS_KEY_FILE=${JSON.stringify(files.keyFile)}: ${err.message}`]);
      throw err;
    }
  }

  private static readTexts(files: ServerCertificateFiles): { cert: string; key: string } {
    const read = (variable: string, path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch (err) {
        throw new ConfigError([`${variable}=${JSON.stringify(path)}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
      }
    };
    return { cert: read('TLS_CERT_FILE', files.certFile), key: read('TLS_KEY_FILE', files.keyFile) };
  }

  private static check(texts: { cert: string; key: string }): ServerPair {
    const cert = checkCertificatePair(texts.cert, texts.key);
    return { ...texts, serial: normalizeSerial(cert.serialNumber) };
  }

  /** The pair in effect. */
  current(): ServerPair {
    return this.pair;
  }

  /** Re-reads both files; returns whether a new pair took effect. */
  reload(): boolean {
    let texts: { cert: string; key: string };
    try {
      texts = ServerCertificate.readTexts(this.files);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return this.refuse({ cert: '', key: '' }, err.problems.join('; '));
    }
    if (texts.cert === this.pair.cert && texts.key === this.pair.key) {
      this.refused = undefined;
      return false;
    }
    let next: ServerPair;
    try {
      next = ServerCertificate.check(texts);
    } catch (err) {
      if (!(err instanceof TlsFileError)) throw err;
      return this.refuse(texts, err.message);
    }
    const previous = this.pair.serial;
    this.pair = next;
    this.refused = undefined;
    this.log.info('server certificate reloaded', { serial: next.serial, previousSerial: previous });
    return true;
  }

  private refuse(texts: { cert: string; key: string }, why: string): false {
    const same = this.refused?.cert === texts.cert && this.refused.key === texts.key;
    if (!same) this.refused = { ...texts, logged: false };
    else if (!this.refused!.logged) {
      this.refused!.logged = true;
      this.log.error('server certificate files changed but cannot be used; keeping the previous pair', { certFile: this.files.certFile, keyFile: this.files.keyFile, problem: why });
    }
    return false;
  }

  /** Re-reads the files every `intervalMs`, calling `onChange` after a new pair took effect; returns the stop. */
  watch(intervalMs: number, onChange: () => void): () => void {
    if (this.timer) throw new Error('ServerCertificate is already being watched');
    this.timer = setInterval(() => {
      try {
        if (this.reload()) onChange();
      } catch (err) {
        // Thrown from a timer it would end core; the last good pair stays in use.
        this.log.error('server certificate reload failed; the next poll tries again', { err: (err as Error).message });
      }
    }, intervalMs);
    this.timer.unref();
    return () => {
      clearInterval(this.timer);
      this.timer = undefined;
    };
  }
}
