import { spawn } from 'node:child_process';
import { NonstopError } from '../../common/errors/nonstop-error';
import { renderAllow, renderRemoveTable, renderRevoke, renderRuleset, type RulesetOptions } from './ruleset';

export class FirewallError extends NonstopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('firewall_unusable', message, 500, options);
  }
}

/** Runs `nft -f -` with `script` on stdin; rejects with nft's own message. */
function nft(binary: string, args: string[], script?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new FirewallError(`cannot run ${binary}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new FirewallError(`${binary} ${args.join(' ')} exited ${code}: ${err.trim().split('\n')[0] ?? ''}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(script ?? '');
  });
}

interface Pending {
  script: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The gateway's nftables table. Every change is an `nft -f` transaction. The nft binary
 * carries cap_net_admin as a file capability in the image (see Dockerfile.gateway): the
 * gateway process itself never holds NET_ADMIN.
 *
 * Window changes are batched: while one nft runs, the next changes queue up and go in the
 * following single run. A burst of knocks (or of spoofed sources completing a known static
 * sequence) costs one process at a time, never one per knock.
 */
export class Firewall {
  private queue: Pending[] = [];
  private busy = false;
  /** nft runs so far, and the changes they carried: the batching test reads them. */
  runs = 0;
  changes = 0;

  constructor(
    private readonly options: RulesetOptions,
    private readonly binary = 'nft',
    private readonly maxQueued = 10_000,
  ) {}

  /** Loads the table atomically; fails (closed) with nft's reason if nftables is not usable. */
  async load(): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderRuleset(this.options));
  }

  allow(address: string, windowMs: number): Promise<void> {
    return this.enqueue(renderAllow(address, windowMs));
  }

  revoke(address: string): Promise<void> {
    return this.enqueue(renderRevoke(address));
  }

  private enqueue(script: string): Promise<void> {
    if (this.queue.length >= this.maxQueued) return Promise.reject(new FirewallError('too many firewall changes pending'));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ script, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    if (this.busy || this.queue.length === 0) return;
    this.busy = true;
    const batch = this.queue;
    this.queue = [];
    this.runs++;
    this.changes += batch.length;
    nft(this.binary, ['-f', '-'], batch.map((p) => p.script).join('')).then(
      () => batch.forEach((p) => p.resolve()),
      (err: Error) => batch.forEach((p) => p.reject(err)),
    ).finally(() => {
      this.busy = false;
      this.drain();
    });
  }

  async remove(): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderRemoveTable());
  }
}
