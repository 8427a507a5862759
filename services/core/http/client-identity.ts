import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { ConfigError } from '../../common/errors/config-error';
import { BROKER_NAME } from '../../common/ids/names';
import type { Logger } from '../../common/log/logger';
import { CrlError, normalizeSerial, readCrls } from '../../common/pki/crl';

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

export interface ClientIdentityFiles {
  /** The deployment CA (CLIENT_CA_FILE). */
  caFile: string;
  /** The CA's revocation list (CLIENT_CRL_FILE). */
  crlFile: string;
  /** The brokers core knows, one name per line (CLIENT_NAMES_FILE). */
  namesFile: string;
}

interface Policy {
  texts: { ca: string; crl: string; names: string };
  names: ReadonlySet<string>;
  revoked: ReadonlySet<string>;
  /** One CRL per CA of the CA file (two while a CA is rotated): OpenSSL reads one per entry. */
  crls: string[];
}

/** Reads one line per broker name; # comments and blank lines skipped. */
export function parseBrokerNames(text: string): Set<string> {
  const names = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!BROKER_NAME.test(line)) throw new ConfigError([`line ${i + 1}: ${JSON.stringify(line.slice(0, 80))} is not a broker name`]);
    names.add(line);
  });
  return names;
}

/**
 * Who may talk to core: a client certificate from the deployment CA, meant for client
 * authentication, naming (CN) a broker on core's list, and not on the CA's revocation
 * list. The CA and the CRL go into the TLS context, so a revoked certificate fails the
 * handshake; the app checks the rest per connection (refusal()), and again on a connection
 * that was open when the files changed (generation), so revoking a broker also ends its
 * keep-alive connections' access. The files are polled: a change that parses takes effect
 * within the poll interval, one that does not is logged and the last good one kept.
 */
export class ClientIdentity {
  private policy: Policy;
  private gen = 0;
  private watching = false;

  private constructor(
    private readonly files: ClientIdentityFiles,
    policy: Policy,
    private readonly log: Logger,
  ) {
    this.policy = policy;
  }

  /** Reads and checks the three files; a problem is a ConfigError naming the variable. */
  static async load(files: ClientIdentityFiles, log: Logger): Promise<ClientIdentity> {
    return new ClientIdentity(files, await ClientIdentity.read(files), log);
  }

  private static async read(files: ClientIdentityFiles): Promise<Policy> {
    const read = (variable: string, path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch (err) {
        throw new ConfigError([`${variable}=${JSON.stringify(path)}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
      }
    };
    const texts = { ca: read('CLIENT_CA_FILE', files.caFile), crl: read('CLIENT_CRL_FILE', files.crlFile), names: read('CLIENT_NAMES_FILE', files.namesFile) };
    let revoked: Set<string>;
    let crls: string[];
    try {
      ({ revoked, crls } = await readCrls(texts.crl, texts.ca));
    } catch (err) {
      if (err instanceof CrlError) throw new ConfigError([`CLIENT_CRL_FILE=${JSON.stringify(files.crlFile)}: ${err.message}`]);
      throw err;
    }
    let names: Set<string>;
    try {
      names = parseBrokerNames(texts.names);
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError([`CLIENT_NAMES_FILE=${JSON.stringify(files.namesFile)}: ${err.problems.join('; ')}`]);
      throw err;
    }
    return { texts, names, revoked, crls };
  }

  /** Bumped on every change that took effect: a connection checked before must be checked again. */
  get generation(): number {
    return this.gen;
  }

  /** The texts in effect: the CA file (one CA, or the bundle [new, old]) and the CRL file. */
  tlsOptions(): { ca: string; crl: string } {
    return { ca: this.policy.texts.ca, crl: this.policy.texts.crl };
  }

  /** For the TLS secure context: the CAs to verify against and each one's CRL, one entry per list. */
  secureContextOptions(): { ca: string; crl: string[] } {
    return { ca: this.policy.texts.ca, crl: this.policy.crls };
  }

  /** Why this TLS connection's client may not use core, or undefined when it may. */
  refusal(socket: TLSSocket): string | undefined {
    const cert = socket.getPeerCertificate?.();
    if (!cert || !socket.authorized) return 'a client certificate from the deployment CA is required';
    if (!cert.ext_key_usage?.includes(CLIENT_AUTH_OID)) return 'a client certificate for client authentication is required';
    const name = typeof cert.subject?.CN === 'string' ? cert.subject.CN : undefined;
    if (name === undefined || !this.policy.names.has(name)) return 'the client certificate names no broker core knows';
    if (this.policy.revoked.has(normalizeSerial(cert.serialNumber))) return 'the client certificate is revoked';
    return undefined;
  }

  /** Re-reads the files; returns whether anything changed and took effect. */
  async reload(): Promise<boolean> {
    let next: Policy;
    try {
      next = await ClientIdentity.read(this.files);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      this.log.error('client identity files changed but cannot be used; keeping the previous ones', { problems });
      return false;
    }
    const t = this.policy.texts;
    if (next.texts.ca === t.ca && next.texts.crl === t.crl && next.texts.names === t.names) return false;
    this.policy = next;
    this.gen++;
    this.log.info('client identity reloaded', { brokers: [...next.names], revokedCertificates: next.revoked.size });
    return true;
  }

  /**
   * Re-reads the files every `intervalMs` and calls `onChange` after a reload took effect;
   * returns the stop. Compares their text, not fs.watchFile's stats: watchFile takes its first
   * stat later, on the thread pool, and misses a change landing before it.
   */
  watch(intervalMs: number, onChange: () => void): () => void {
    if (this.watching) throw new Error('ClientIdentity is already being watched');
    this.watching = true;
    let running: Promise<void> = Promise.resolve();
    const check = (): void => {
      // A failed check must not end the chain: every later change would go unseen.
      running = running
        .then(async () => {
          if (await this.reload()) onChange();
        })
        .catch((err: unknown) => {
          this.log.error('client identity reload failed; the next poll tries again', { err: (err as Error).message });
        });
    };
    const timer = setInterval(check, intervalMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.watching = false;
    };
  }
}
