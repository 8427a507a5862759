import assert from 'node:assert/strict';
import { KnockWindowPicker } from '../../../../services/broker/tunnel/knock-windows';
import type { KnockSpec } from '../../../../services/common/knock/sequence';

const PERIOD = 30_000;
const timeSpec: KnockSpec = { mode: 'time', secret: Buffer.from('s'), length: 4, rangeStart: 40000, rangeEnd: 40999, periodMs: PERIOD };
const N = 56_666_666;
const inWindow = (w: number, offset = 1234): number => w * PERIOD + offset;

describe('KnockWindowPicker', () => {
  it('always uses window 0 for a static sequence', () => {
    const picker = new KnockWindowPicker({ mode: 'static', ports: [7000, 8000] });
    assert.deepEqual(picker.pick(inWindow(N)), { window: 0 });
    picker.markUsed(0);
    assert.deepEqual(picker.pick(inWindow(N)), { window: 0 });
    picker.markUsed(0);
    assert.deepEqual(picker.pick(inWindow(N + 1)), { window: 0 });
  });

  it('first picks the current window', () => {
    assert.deepEqual(new KnockWindowPicker(timeSpec).pick(inWindow(N)), { window: N });
  });

  it('picks the next window once the current one is used', () => {
    const picker = new KnockWindowPicker(timeSpec);
    picker.markUsed(N);
    assert.deepEqual(picker.pick(inWindow(N)), { window: N + 1 });
  });

  it('waits until the next window begins once the current and next ones are used', () => {
    const picker = new KnockWindowPicker(timeSpec);
    picker.markUsed(N);
    picker.markUsed(N + 1);
    const now = inWindow(N, 10_000);
    const got = picker.pick(now);
    assert.ok('waitMs' in got, JSON.stringify(got));
    assert.ok(got.waitMs > 0);
    // Waking after waitMs lands in window N+1 and finds a window to use.
    assert.equal(Math.floor((now + got.waitMs) / PERIOD), N + 1);
    assert.equal(Math.floor((now + got.waitMs - 2) / PERIOD), N);
    assert.deepEqual(picker.pick(now + got.waitMs), { window: N + 2 });
  });

  it('uses the current window again once time has moved past the used ones', () => {
    const picker = new KnockWindowPicker(timeSpec);
    picker.markUsed(N);
    picker.markUsed(N + 1);
    assert.deepEqual(picker.pick(inWindow(N + 2)), { window: N + 2 });
    assert.deepEqual(new KnockWindowPicker(timeSpec).pick(inWindow(N + 5)), { window: N + 5 });
    const p2 = new KnockWindowPicker(timeSpec);
    p2.markUsed(N);
    assert.deepEqual(p2.pick(inWindow(N + 1)), { window: N + 1 });
  });

  it('never goes back to a window older than one already used', () => {
    const picker = new KnockWindowPicker(timeSpec);
    picker.markUsed(N + 1);
    picker.markUsed(N - 3);
    assert.ok('waitMs' in picker.pick(inWindow(N)));
  });
});
