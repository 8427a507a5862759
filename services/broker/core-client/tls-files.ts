import { readFileSync } from 'node:fs';
import type { Logger } from '../../common/log/logger';
import { normalizeSerial } from '../../common/pki/crl';
import { checkCertificatePair, parseCaBundle, TlsFileError } from '../../common/pki/tls-files';
import type { CoreTls } from './client';

/** How often the broker looks at CORE_CA_FILE, CORE_CLIENT_CERT_FILE and CORE_CLIENT_KEY_FILE. */
export const CORE_TLS_POLL_MS = 2000;

export interface CoreTlsPaths {
  ca: string;
  cert: string;
  key: string;
}

/**
 * The broker's TLS files for core, followed while it runs: when keygen rotates the client
 * certificate (`rotate broker-cert`) or the CA (`rotate ca`, the CA file becoming the bundle
 * [new, old]), the new material is handed to the core client (useTls: a new pool for new
 * requests, the old one closed when its requests are done). The three files are written one
 * after the other, so a poll can see a certificate with the other key: such a set is not
 * applied and is logged (one line) only when the same texts are still unusable on the next
 * poll. What cannot be used is never applied; the client keeps the last good set.
 */
export class CoreTlsFiles {
  private tls: CoreTls;
  private refused: { texts: CoreTls; logged: boolean } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly paths: CoreTlsPaths,
    initial: CoreTls,
    private readonly apply: (tls: CoreTls) => void,
    private readonly log: Logger,
  ) {
    this.tls = initial;
  }

  /** The texts in effect (what the expiry gauges report). */
  current(): CoreTls {
    return this.tls;
  }

  /** Re-reads the files; returns whether a new set took effect. */
  check(): boolean {
    let texts: CoreTls;
    try {
      texts = { ca: readFileSync(this.paths.ca, 'utf8'), cert: readFileSync(this.paths.cert, 'utf8'), key: readFileSync(this.paths.key, 'utf8') };
    } catch (err) {
      return this.refuse(undefined, `cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (texts.ca === this.tls.ca && texts.cert === this.tls.cert && texts.key === this.tls.key) {
      this.refused = undefined;
      return false;
    }
    let serial: string;
    try {
      parseCaBundle(texts.ca);
      serial = normalizeSerial(checkCertificatePair(texts.cert, texts.key).serialNumber);
    } catch (err) {
      if (!(err instanceof TlsFileError)) throw err;
      return this.refuse(texts, err.message);
    }
    const previousSerial = normalizeSerial(checkCertificatePair(this.tls.cert, this.tls.key).serialNumber);
    this.tls = texts;
    this.refused = undefined;
    this.apply(texts);
    this.log.info('core client certificate reloaded', { serial, previousSerial, caCertificates: parseCaBundle(texts.ca).length });
    return true;
  }

  private refuse(texts: CoreTls | undefined, why: string): false {
    const t = texts ?? { ca: '', cert: '', key: '' };
    const same = this.refused !== undefined && this.refused.texts.ca === t.ca && this.refused.texts.cert === t.cert && this.refused.texts.key === t.key;
    if (!same) this.refused = { texts: t, logged: false };
    else if (!this.refused!.logged) {
      this.refused!.logged = true;
      this.log.error('core TLS files changed but cannot be used; keeping the previous ones', { caFile: this.paths.ca, certFile: this.paths.cert, keyFile: this.paths.key, problem: why });
    }
    return false;
  }

  start(intervalMs = CORE_TLS_POLL_MS): void {
    this.stop();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
