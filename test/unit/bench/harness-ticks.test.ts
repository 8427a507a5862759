import assert from 'node:assert/strict';
import { harnessTicks, parsePidFamily } from '../../../bench/host';

type Family = Map<number, { ppid: number; ticks: number; childTicks: number }>;

const SELF = 100;

describe('bench host: the CPU of processes the benchmark started', () => {
  it('counts children and their children, with what they reaped, and no other process', () => {
    const procs: Family = new Map([
      [1, { ppid: 0, ticks: 5000, childTicks: 90_000 }],
      [SELF, { ppid: 1, ticks: 700, childTicks: 0 }],
      [200, { ppid: SELF, ticks: 40, childTicks: 3 }],
      [300, { ppid: 200, ticks: 7, childTicks: 0 }],
      [400, { ppid: 1, ticks: 1000, childTicks: 0 }],
    ]);
    const h = harnessTicks(SELF, 11, procs);
    assert.deepEqual([...h.descendants].sort(), [200, 300]);
    assert.equal(h.ticks, 11 + 40 + 3 + 7);
  });

  it('counts a child reaped between two snapshots once: its ticks move from its own count to our cutime', () => {
    const a = harnessTicks(SELF, 0, new Map([[200, { ppid: SELF, ticks: 30, childTicks: 0 }]]));
    const b = harnessTicks(SELF, 50, new Map());
    assert.equal(b.ticks - a.ticks, 20);
  });

  it('finds none when the benchmark started nothing', () => {
    const h = harnessTicks(SELF, 0, new Map([[400, { ppid: 1, ticks: 1000, childTicks: 0 }]]));
    assert.equal(h.descendants.size, 0);
    assert.equal(h.ticks, 0);
  });

  it('reads the parent and the times from /proc/<pid>/stat, whatever the command name holds', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …
    const text = '4242 (a (weird) name) S 100 4242 4242 0 -1 4194304 10 0 0 0 120 30 7 2 20 0 1 0 55 1000 10';
    assert.deepEqual(parsePidFamily(text), { ppid: 100, ticks: 150, childTicks: 9 });
    assert.throws(() => parsePidFamily('4242 (x) S'), /unreadable/);
  });
});
