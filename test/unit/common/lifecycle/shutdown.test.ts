import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lifecycle } from '../../../../services/common/lifecycle/shutdown';
import { memoryLogger, silentLogger } from '../../../support/logger';

describe('Lifecycle', () => {
  it('runs closers in reverse order of registration and resolves true', async () => {
    const lc = new Lifecycle(silentLogger());
    const order: string[] = [];
    lc.onClose('db', () => {
      order.push('db');
    });
    lc.onClose('http', async () => {
      await sleep(5);
      order.push('http');
    });
    lc.onClose('metrics', () => {
      order.push('metrics');
    });
    assert.equal(await lc.close(1000), true);
    assert.deepEqual(order, ['metrics', 'http', 'db']);
  });

  it('keeps going after a failing closer, logs it, and resolves false', async () => {
    const { log, lines } = memoryLogger();
    const lc = new Lifecycle(log);
    const ran: string[] = [];
    lc.onClose('first', () => {
      ran.push('first');
    });
    lc.onClose('sync-throws', () => {
      ran.push('sync-throws');
      throw new Error('boom');
    });
    lc.onClose('rejects', async () => {
      ran.push('rejects');
      await Promise.resolve();
      throw new Error('bang');
    });
    lc.onClose('last', () => {
      ran.push('last');
    });
    assert.equal(await lc.close(1000), false);
    assert.deepEqual(ran, ['last', 'rejects', 'sync-throws', 'first']);
    const failures = lines.filter((l) => l.message === 'close failed').map((l) => l.closer);
    assert.deepEqual(failures, ['rejects', 'sync-throws']);
  });

  it('returns the same promise when closed twice, running each closer once', async () => {
    const lc = new Lifecycle(silentLogger());
    let runs = 0;
    lc.onClose('x', () => {
      runs++;
    });
    assert.equal(lc.isClosing, false);
    const a = lc.close(1000);
    const b = lc.close(1000);
    assert.equal(a, b);
    assert.equal(lc.isClosing, true);
    await a;
    await lc.close(1000);
    assert.equal(runs, 1);
  });

  it('cuts off a closer that hangs at the deadline and still runs the later ones', async () => {
    const { log, lines } = memoryLogger();
    const lc = new Lifecycle(log);
    const ran: string[] = [];
    lc.onClose('earliest', () => {
      ran.push('earliest');
    });
    lc.onClose('hangs', () => new Promise<void>(() => {}));
    lc.onClose('latest', () => {
      ran.push('latest');
    });
    assert.equal(await lc.close(50), false);
    assert.deepEqual(ran, ['latest', 'earliest']);
    assert.ok(lines.some((l) => l.message === 'close failed' && l.closer === 'hangs' && /did not close within 50 ms/.test(String(l.err))));
  });

  it('resolves true with no closers', async () => {
    assert.equal(await new Lifecycle(silentLogger()).close(10), true);
  });
});
