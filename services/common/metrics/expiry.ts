import { Gauge, type Registry } from 'prom-client';
import { CertificateExpiryError, certificatesExpiry, crlExpiry } from '../pki/expiry';
import type { Logger } from '../log/logger';

/**
 * Expiry gauges (unix seconds) over files a tier already holds in memory. Each file is
 * tracked by a function returning its current text, so the file keeps one owner: the part
 * that reads (and, in core, re-reads) it. The text is parsed again only when it changed,
 * at scrape time, so a reload shows in the next scrape without a second reader.
 */
export class ExpiryGauge<L extends string> {
  private readonly sources = new Map<string, () => string>();
  private readonly parsed = new Map<string, { text: string; value: number | undefined }>();
  private readonly gauge: Gauge<L>;
  private readonly label: L;
  private log: Logger | undefined;

  constructor(
    opts: { name: string; help: string; label: L; registers: Registry[] },
    private readonly parse: (text: string) => number | undefined,
  ) {
    const refresh = (): void => this.refresh();
    this.gauge = new Gauge({ name: opts.name, help: opts.help, labelNames: [opts.label], registers: opts.registers, collect: refresh });
    this.label = opts.label;
  }

  /** Exports the expiry of the text `text()` returns under `<label>="<value>"`. */
  track(value: string, text: () => string, log?: Logger): void {
    this.sources.set(value, text);
    this.log ??= log;
    this.refresh();
  }

  private refresh(): void {
    for (const [value, text] of this.sources) {
      const current = text();
      const cached = this.parsed.get(value);
      if (cached?.text === current) continue;
      let expiry: number | undefined;
      try {
        expiry = this.parse(current);
      } catch (err) {
        if (!(err instanceof CertificateExpiryError)) throw err;
        // The file's owner decides whether the file can be used (core keeps its last good CA);
        // a date that cannot be read is left out rather than exported wrong.
        this.log?.warn('expiry cannot be read; not exported', { [this.label]: value, err: err.message });
        expiry = undefined;
      }
      this.parsed.set(value, { text: current, value: expiry });
      const labels = { [this.label]: value } as Record<L, string>;
      if (expiry === undefined) this.gauge.remove(labels);
      else this.gauge.set(labels, expiry);
    }
  }
}

/** notAfter of each certificate file a tier uses, by its role (`certificate="server"`, `"ca"`, `"client"`). */
export function certificateExpiryGauge(registers: Registry[]): ExpiryGauge<'certificate'> {
  return new ExpiryGauge(
    {
      name: 'nonstop_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the earliest-expiring certificate in each certificate file this service uses, by role, unix seconds',
      label: 'certificate',
      registers,
    },
    certificatesExpiry,
  );
}

/** nextUpdate of a CRL a tier uses (core: the deployment CA's), when the CRL has one. */
export function crlExpiryGauge(registers: Registry[]): ExpiryGauge<'crl'> {
  return new ExpiryGauge(
    {
      name: 'nonstop_crl_expiry_timestamp_seconds',
      help: 'nextUpdate of each certificate revocation list this service uses, unix seconds (absent when the CRL has none)',
      label: 'crl',
      registers,
    },
    crlExpiry,
  );
}
