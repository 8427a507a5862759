import { spawn } from 'node:child_process';
import { NonstopError } from '../../common/errors/nonstop-error';
import { renderAllow, renderRemoveTable, renderRevoke, renderRuleset, type RulesetOptions, TABLE } from './ruleset';

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

/**
 * The gateway's nftables table. Every change is one `nft -f` transaction. The nft binary
 * carries cap_net_admin as a file capability in the image (see Dockerfile.gateway): the
 * gateway process itself never holds NET_ADMIN.
 */
export class Firewall {
  constructor(
    private readonly options: RulesetOptions,
    private readonly binary = 'nft',
  ) {}

  /** Loads the table atomically; fails (closed) with nft's reason if nftables is not usable. */
  async load(): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderRuleset(this.options));
  }

  async allow(address: string, windowMs: number): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderAllow(address, windowMs));
  }

  async revoke(address: string): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderRevoke(address));
  }

  async remove(): Promise<void> {
    await nft(this.binary, ['-f', '-'], renderRemoveTable());
  }

  /** The table as nft prints it (JSON), for health and tests. */
  async list(): Promise<unknown> {
    return JSON.parse(await nft(this.binary, ['-j', 'list', 'table', 'inet', TABLE])) as unknown;
  }
}
