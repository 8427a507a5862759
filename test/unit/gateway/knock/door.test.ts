import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { timeSequence, type KnockSpec, type TimeSpec } from '../../../../services/common/knock/sequence';
import { NoFirewall, type WindowFirewall } from '../../../../services/gateway/firewall/no-firewall';
import { KnockDoor, type DoorOptions, type KnockCapture } from '../../../../services/gateway/knock/door';
import type { SnifferEvents } from '../../../../services/gateway/knock/sniffer';
import type { KnockTracker } from '../../../../services/gateway/knock/tracker';
import { gatewayMetrics, type GatewayMetrics } from '../../../../services/gateway/metrics';
import { memoryLogger } from '../../../support/logger';
import { counterValue } from '../../../support/ssh-fixtures';
import { tempDir } from '../../../support/tmp';

/** Feeds SYNs straight to the tracker, as the tcpdump sniffer does with captured ones. */
class FakeCapture extends EventEmitter<SnifferEvents> implements KnockCapture {
  running = false;
  restarts = 0;
  packets = 0;
  private seq = 0;
  constructor(readonly tracker: KnockTracker) {
    super();
  }
  start(): Promise<void> {
    this.running = true;
    return Promise.resolve();
  }
  stop(): void {
    this.running = false;
  }
  knock(src: string, ports: readonly number[]): void {
    for (const dport of ports) {
      this.packets++;
      this.seq++;
      const outcome = this.tracker.onSyn({ src, dport, sport: 40000 + this.seq, seq: this.seq });
      if (outcome !== 'ignored') this.emit('outcome', outcome, src);
    }
  }
}

class RecordingFirewall implements WindowFirewall {
  readonly calls: string[] = [];
  allow(address: string, windowMs: number): Promise<void> {
    this.calls.push(`allow ${address} ${windowMs}`);
    return Promise.resolve();
  }
  revoke(address: string): Promise<void> {
    this.calls.push(`revoke ${address}`);
    return Promise.resolve();
  }
}

const PERIOD = 30_000;
const W = 57_000_000;
const timeSpec: TimeSpec = { mode: 'time', secret: Buffer.alloc(32, 9), length: 4, rangeStart: 40000, rangeEnd: 40999, periodMs: PERIOD };

describe('KnockDoor', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: { t: number };
  const doors: KnockDoor[] = [];
  beforeEach(() => {
    tmp = tempDir();
    clock = { t: W * PERIOD + 10_000 };
  });
  afterEach(() => {
    for (const d of doors.splice(0)) d.stop();
    tmp.cleanup();
  });

  async function door(overrides: Partial<DoorOptions> = {}, firewall: WindowFirewall = new RecordingFirewall()) {
    const metrics: GatewayMetrics = gatewayMetrics(new Registry());
    const logs = memoryLogger();
    let capture: FakeCapture | undefined;
    const d = new KnockDoor(
      {
        spec: timeSpec,
        stepTimeoutMs: 5000,
        sequenceTimeoutMs: 15_000,
        windowMs: 4000,
        maxSources: 1000,
        budget: { attempts: 10, refillMs: 6000 },
        replayFile: join(tmp.dir, 'knock', 'replay.json'),
        capture: { tcpdump: '/nonexistent', device: 'any', bufferKiB: 64 },
        maxOpenWindows: 100,
        ...overrides,
      },
      { firewall, metrics, log: logs.log, now: () => clock.t, capture: (tracker) => (capture = new FakeCapture(tracker)) },
    );
    doors.push(d);
    await d.start();
    return { door: d, capture: capture!, metrics, logs, firewall };
  }

  it('opens a window for a correct knock: one SSH connection for that address, a firewall window, counted', async () => {
    const g = await door();
    const fw = g.firewall as RecordingFirewall;
    assert.equal(g.door.admit('198.51.100.7'), false, 'admitted before any knock');
    g.capture.knock('198.51.100.7', timeSequence(timeSpec, W, 5));
    assert.equal(g.door.admit('203.0.113.9'), false, 'another address rode the knock');
    assert.equal(g.door.admit('198.51.100.7'), true);
    assert.equal(g.door.admit('198.51.100.7'), false, 'a second connection rode the same knock');
    assert.deepEqual(fw.calls, ['allow 198.51.100.7 4000', 'revoke 198.51.100.7']);
    assert.equal(await counterValue(g.metrics.windowsOpened), 1);
    assert.equal(await counterValue(g.metrics.knockSyns, { outcome: 'opened' }), 1);
    assert.equal(await counterValue(g.metrics.knockSyns, { outcome: 'progress' }), 3);
  });

  it('admits only knocked addresses with FIREWALL=off too (the null firewall)', async () => {
    const g = await door({}, new NoFirewall());
    assert.equal(g.door.admit('198.51.100.7'), false);
    g.capture.knock('198.51.100.7', timeSequence(timeSpec, W, 5));
    assert.equal(g.door.admit('198.51.100.7'), true);
  });

  it('refuses a knock used before a restart: a new door on the same record, from another address', async () => {
    const before = await door();
    const recorded = timeSequence(timeSpec, W, 5);
    before.capture.knock('198.51.100.7', recorded);
    assert.equal(before.door.admit('198.51.100.7'), true);
    before.door.stop();
    clock.t += 5000;
    const after = await door();
    after.capture.knock('203.0.113.50', recorded);
    assert.equal(after.door.admit('203.0.113.50'), false, 'the replay opened after the restart');
    assert.equal(await counterValue(after.metrics.knockSyns, { outcome: 'replay' }), 1);
    // Controls: the same replay against a door that kept no record opens; a fresh nonce opens here.
    const forgetful = await door({ replayFile: join(tmp.dir, 'elsewhere', 'replay.json') });
    forgetful.capture.knock('203.0.113.50', recorded);
    assert.equal(forgetful.door.admit('203.0.113.50'), true);
    after.capture.knock('198.51.100.7', timeSequence(timeSpec, W, 6));
    assert.equal(after.door.admit('198.51.100.7'), true);
  });

  it('opens nothing when it cannot record the knock as used (fail closed), and says so', async () => {
    // A directory where the temporary file goes: the record reads (empty) but cannot be replaced.
    mkdirSync(join(tmp.dir, 'knock', 'replay.json.tmp'), { recursive: true });
    const g = await door();
    const fw = g.firewall as RecordingFirewall;
    g.capture.knock('198.51.100.7', timeSequence(timeSpec, W, 5));
    assert.equal(g.door.admit('198.51.100.7'), false);
    assert.deepEqual(fw.calls, []);
    assert.equal(await counterValue(g.metrics.knockSyns, { outcome: 'unrecorded' }), 1);
    assert.equal(await counterValue(g.metrics.windowsOpened), 0);
    assert.ok(g.logs.lines.some((l) => l.level === 'error' && l.message === 'cannot write the record of used knocks'));
  });

  it('after a corrupt record refuses the windows it may have covered, writes that down, and opens again two windows on', async () => {
    mkdirSync(join(tmp.dir, 'knock'));
    writeFileSync(join(tmp.dir, 'knock', 'replay.json'), '{"version":1,"burnt":[[57000000,5');
    const g = await door();
    assert.ok(g.logs.lines.some((l) => l.level === 'error' && String(l.message).startsWith('record of used knocks lost')));
    g.capture.knock('198.51.100.7', timeSequence(timeSpec, W, 5));
    assert.equal(g.door.admit('198.51.100.7'), false);
    // Written down: a restart loop keeps refusing.
    const saved = JSON.parse(readFileSync(join(tmp.dir, 'knock', 'replay.json'), 'utf8')) as { refuseThrough: [number, number] };
    assert.equal(saved.refuseThrough[0], W + 1);
    const again = await door();
    again.capture.knock('198.51.100.8', timeSequence(timeSpec, W + 1, 6));
    assert.equal(again.door.admit('198.51.100.8'), false);
    clock.t = (W + 2) * PERIOD + 1000;
    again.capture.knock('198.51.100.8', timeSequence(timeSpec, W + 2, 7));
    assert.equal(again.door.admit('198.51.100.8'), true);
  });

  it('counts every throttled SYN but writes one throttle line per 10 s', async () => {
    const g = await door({ budget: { attempts: 2, refillMs: 60_000 } });
    const guesses = Array.from({ length: 200 }, (_, i) => 40000 + ((i * 37) % 1000));
    g.capture.knock('203.0.113.66', guesses);
    const throttled = await counterValue(g.metrics.knockSyns, { outcome: 'throttled' });
    assert.equal(throttled, 198);
    const lines = () => g.logs.lines.filter((l) => String(l.message).startsWith('knock budget spent'));
    assert.equal(lines().length, 1);
    assert.equal(lines()[0]!.src, '203.0.113.66');
    clock.t += 10_000;
    g.capture.knock('203.0.113.66', guesses.slice(0, 5));
    assert.equal(lines().length, 2);
    assert.equal(lines()[1]!.linesHeldBack, 197);
  });

  it('keeps no replay record for a static sequence (reusable, as knockd) and warns that it is one', async () => {
    const spec: KnockSpec = { mode: 'static', ports: [7000, 8000, 9000] };
    const g = await door({ spec });
    g.capture.knock('198.51.100.7', [7000, 8000, 9000]);
    assert.equal(g.door.admit('198.51.100.7'), true);
    g.capture.knock('198.51.100.7', [7000, 8000, 9000]);
    assert.equal(g.door.admit('198.51.100.7'), true);
    assert.ok(g.logs.lines.some((l) => l.level === 'warn' && String(l.message).startsWith('static knock sequence')));
    assert.throws(() => readFileSync(join(tmp.dir, 'knock', 'replay.json')), { code: 'ENOENT' });
  });
});
