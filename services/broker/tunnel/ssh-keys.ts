import { readFileSync } from 'node:fs';
import type { Logger } from '../../common/log/logger';
import { checkSshPrivateKey, SshPrivateKeyError } from '../../common/ssh/private-key';
import { previousOf } from '../../common/pki/files';

/**
 * The broker's SSH keys, followed while it runs: SSH_KEY_FILE (the newest key) and, during a
 * broker key rotation's overlap, `<SSH_KEY_FILE>.previous` (the key it replaced; optional).
 * `nonstop-keygen rotate broker-key` writes both, `retire broker-key` removes the previous
 * one; the broker takes each change within the poll interval, no restart, and `onChange`
 * lets its tunnels move to the newest key (TunnelKeeper.keysChanged). Polled by reading and
 * comparing text (common/config/followed-file.ts says why not fs.watch). A file that does
 * not hold a usable private key is refused with one log line naming it, and the keys in use
 * are kept.
 */
export class BrokerSshKeys {
  private keys: readonly string[];
  private lastText: string | undefined;
  private lastErrorCode: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    initial: string,
    private readonly log: Logger,
    private readonly onChange: () => void,
  ) {
    this.keys = [initial];
    // What the broker starts with: a broker restarted during an overlap has both keys at once.
    this.check(false);
  }

  get previousPath(): string {
    return previousOf(this.path);
  }

  /** Newest first: [current] or [current, previous]. */
  current(): readonly string[] {
    return this.keys;
  }

  start(intervalMs: number): () => void {
    this.timer = setInterval(() => this.check(true), intervalMs);
    this.timer.unref();
    return () => clearInterval(this.timer);
  }

  /** Reads both files now; applies them if they changed and hold usable keys. */
  check(report = true): void {
    const current = this.read(this.path, false);
    if (current === undefined) return;
    const previous = this.read(this.previousPath, true);
    if (previous === null) return;
    this.lastErrorCode = undefined;
    const text = `${current}\0${previous ?? ''}`;
    if (text === this.lastText) return;
    this.lastText = text;
    let fingerprint: string;
    let previousFingerprint: string | undefined;
    try {
      fingerprint = this.fingerprint(this.path, current);
      previousFingerprint = previous === undefined ? undefined : this.fingerprint(this.previousPath, previous);
    } catch (err) {
      if (err instanceof SshPrivateKeyError) return;
      throw err;
    }
    const keys = previous === undefined ? [current] : [current, previous];
    if (keys.length === this.keys.length && keys.every((k, i) => k === this.keys[i])) return;
    this.keys = keys;
    if (!report) return;
    this.log.info('ssh keys reloaded', { key: fingerprint, previousKey: previousFingerprint });
    this.onChange();
  }

  private fingerprint(path: string, text: string): string {
    try {
      return checkSshPrivateKey(text);
    } catch (err) {
      if (err instanceof SshPrivateKeyError) this.log.error('ssh key file changed but cannot be used; keeping the keys in use', { path, err: err.message });
      throw err;
    }
  }

  /** The file's text; undefined when absent and optional; undefined/null (optional) when unreadable, logged once per error. */
  private read(path: string, optional: true): string | undefined | null;
  private read(path: string, optional: false): string | undefined;
  private read(path: string, optional: boolean): string | undefined | null {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
      if (optional && code === 'ENOENT') return undefined;
      if (code !== this.lastErrorCode) {
        this.lastErrorCode = code;
        this.log.error('ssh key file cannot be read; keeping the keys in use', { path, err: code });
      }
      return optional ? null : undefined;
    }
  }
}
