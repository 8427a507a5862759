import { EventEmitter } from 'node:events';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { backoffDelay } from '../../common/lifecycle/backoff';
import type { Logger } from '../../common/log/logger';
import { knockCaptureFilter } from './filter';
import { decodeSyn } from './packet';
import { PcapStreamReader } from './pcap-stream';
import type { KnockOutcome, KnockTracker } from './tracker';

export interface SnifferEvents {
  outcome: [outcome: KnockOutcome, src: string];
}

export interface SnifferOptions {
  /** The capture program: tcpdump, which holds CAP_NET_RAW as a file capability. */
  tcpdump: string;
  device: string;
  /** Kernel capture buffer, in KiB (tcpdump -B). */
  bufferKiB: number;
  sweepIntervalMs: number;
}

/**
 * Captures TCP SYNs with libpcap through tcpdump (BPF filter in the kernel, headers only,
 * packet-buffered pcap on a pipe) and feeds them to the knock tracker. The capture
 * privilege (CAP_NET_RAW) stays with that small process; the gateway's own process holds
 * no capability. tcpdump is restarted with backoff if it dies; until it runs again no
 * knock is recognised, so the SSH port stays closed (fail closed).
 */
export class KnockSniffer extends EventEmitter<SnifferEvents> {
  private child: ChildProcessByStdio<null, Readable, Readable> | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private attempt = 0;
  running = false;
  packets = 0;
  restarts = 0;

  constructor(
    private readonly tracker: KnockTracker,
    private readonly opts: SnifferOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Resolves once tcpdump is capturing (it says "listening on ..."), rejects if it cannot. */
  start(): Promise<void> {
    this.sweepTimer = setInterval(() => this.tracker.sweep(), this.opts.sweepIntervalMs);
    this.sweepTimer.unref();
    return this.spawnCapture();
  }

  private spawnCapture(): Promise<void> {
    const filter = knockCaptureFilter();
    const args = ['-i', this.opts.device, '-n', '-p', '-U', '--immediate-mode', '-s', '128', '-B', String(this.opts.bufferKiB), '-w', '-', filter];
    const child = spawn(this.opts.tcpdump, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const reader = new PcapStreamReader((frame, linkType) => {
      this.packets++;
      const syn = decodeSyn(frame, linkType);
      if (!syn) return;
      const outcome = this.tracker.onSyn(syn);
      if (outcome !== 'ignored') this.emit('outcome', outcome, syn.src);
    });
    child.stdout.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.log.error('capture stream unreadable; restarting capture', { err: (err as Error).message });
        child.kill('SIGKILL');
      }
    });
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      createInterface({ input: child.stderr }).on('line', (line) => {
        if (/listening on/.test(line)) {
          this.running = true;
          this.attempt = 0;
          this.log.info('knock sniffer capturing', { device: this.opts.device, filter });
          if (!settled) {
            settled = true;
            resolve();
          }
        } else if (line.trim() !== '') {
          this.log.warn(line, { child: 'tcpdump' });
        }
      });
      child.on('error', (err) => {
        if (!settled) {
          settled = true;
          reject(new Error(`cannot run ${this.opts.tcpdump}: ${err.message}`));
        }
      });
      child.on('exit', (code, signal) => {
        this.running = false;
        if (!settled) {
          settled = true;
          reject(new Error(`packet capture failed to start (tcpdump exited ${code ?? signal}); it needs CAP_NET_RAW`));
          return;
        }
        this.log.error('packet capture stopped', { code, signal });
        this.scheduleRestart();
      });
    });
  }

  private scheduleRestart(): void {
    if (this.stopped) return;
    const delay = backoffDelay({ baseMs: 200, capMs: 5000, minMs: 100 }, this.attempt++);
    this.restarts++;
    this.restartTimer = setTimeout(() => {
      this.spawnCapture().catch((err: Error) => {
        this.log.error('packet capture restart failed', { err: err.message });
        this.scheduleRestart();
      });
    }, delay);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGTERM');
  }
}
