import assert from 'node:assert/strict';
import { componentLogger, createLogger, type Logger } from '../../../../services/common/log/logger';

/** A field whose every read is counted: winston reads the fields only when it builds a line. */
function countingFields(): { fields: Record<string, unknown>; reads: () => number } {
  let reads = 0;
  const fields = {};
  Object.defineProperty(fields, 'requestId', {
    enumerable: true,
    get: () => {
      reads++;
      return 'r-1';
    },
  });
  return { fields, reads: () => reads };
}

function quiet(logger: Logger): Logger {
  // Lines still go through the whole format pipeline; only the console write is skipped.
  for (const t of logger.transports) t.silent = true;
  return logger;
}

describe('createLogger: suppressed levels cost nothing', () => {
  it('does not build a debug line at level info, from the root logger or a component child', () => {
    const root = quiet(createLogger('test', 'info'));
    const child = componentLogger(root, 'queue');
    const { fields, reads } = countingFields();
    for (let i = 0; i < 100; i++) {
      root.debug('request done', fields);
      child.debug('request done', fields);
    }
    assert.equal(reads(), 0);
  });

  it('builds the line when the level is enabled, with the child its own fields (positive control)', () => {
    const root = quiet(createLogger('test', 'debug'));
    const child = componentLogger(root, 'queue');
    const { fields, reads } = countingFields();
    const seen: Record<string, unknown>[] = [];
    root.on('data', (info: Record<string, unknown>) => seen.push(info));
    child.debug('request done', fields);
    root.info('plain');
    assert.ok(reads() >= 1);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.component, 'queue');
    assert.equal(seen[0]!.requestId, 'r-1');
    assert.equal(seen[0]!.service, 'test');
  });
});
