import assert from 'node:assert/strict';
import { parseCollections, parseDuration, parseFlags, parseRotate, parseScopes, UsageError } from '../../../../services/core/admin/args';

describe('parseFlags', () => {
  it('reads --name value pairs', () => {
    assert.deepEqual(
      [...parseFlags(['--collections', 'a,b', '--scopes', 'read', '--label', 'with spaces'])],
      [
        ['collections', 'a,b'],
        ['scopes', 'read'],
        ['label', 'with spaces'],
      ],
    );
    assert.equal(parseFlags([]).size, 0);
  });

  it('refuses a flag without a value, a bare word, or a single-dash flag', () => {
    for (const args of [['--collections'], ['collections', 'a'], ['-c', 'a'], ['--scopes', 'read', 'extra']]) {
      assert.throws(() => parseFlags(args), UsageError, JSON.stringify(args));
    }
  });

  it('names the unexpected argument', () => {
    assert.throws(() => parseFlags(['oops', 'x']), /unexpected argument "oops"/);
  });
});

describe('parseDuration', () => {
  it('converts seconds, minutes, hours and days to milliseconds', () => {
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('15m'), 900_000);
    assert.equal(parseDuration('12h'), 43_200_000);
    assert.equal(parseDuration('30d'), 2_592_000_000);
    assert.equal(parseDuration('999999d'), 999_999 * 86_400_000);
  });

  it('refuses other shapes with a UsageError', () => {
    for (const text of ['', '30', 'd', '30D', '1.5h', '-1d', '30 d', ' 30d', '30dd', '1w', '1234567d', '1e3s']) {
      assert.throws(() => parseDuration(text), UsageError, JSON.stringify(text));
    }
  });
});

describe('parseScopes', () => {
  it('reads read, write and delete, trimming blanks', () => {
    assert.deepEqual(parseScopes('read,write'), ['read', 'write']);
    assert.deepEqual(parseScopes('read,write,delete'), ['read', 'write', 'delete']);
    assert.deepEqual(parseScopes('delete'), ['delete']);
    assert.deepEqual(parseScopes(' write '), ['write']);
    assert.deepEqual(parseScopes('read , write'), ['read', 'write']);
  });

  it('refuses unknown or empty scopes with a UsageError naming them', () => {
    assert.throws(() => parseScopes('read,admin'), (err: unknown) => err instanceof UsageError && /unknown scope "admin"/.test(err.message));
    for (const text of ['', 'read,', 'READ', 'read;write', 'Delete', 'erase']) assert.throws(() => parseScopes(text), UsageError, JSON.stringify(text));
  });
});

describe('parseCollections', () => {
  it('splits on commas, trims and drops empty items', () => {
    assert.deepEqual(parseCollections('notes, events,,tasks '), ['notes', 'events', 'tasks']);
  });

  it('gives no collections for a missing or blank flag, leaving the refusal to the token store', () => {
    assert.deepEqual(parseCollections(undefined), []);
    assert.deepEqual(parseCollections(' , '), []);
  });
});

describe('parseRotate', () => {
  it('reads the token id, --revoke-old anywhere after it, and --expires-in', () => {
    assert.deepEqual(parseRotate(['0123456789abcdef']), { id: '0123456789abcdef', revokeOld: false });
    assert.deepEqual(parseRotate(['0123456789abcdef', '--revoke-old']), { id: '0123456789abcdef', revokeOld: true });
    assert.deepEqual(parseRotate(['0123456789abcdef', '--revoke-old', '--expires-in', '30d']), { id: '0123456789abcdef', revokeOld: true, expiresInMs: 30 * 86_400_000 });
    assert.deepEqual(parseRotate(['0123456789abcdef', '--expires-in', '1h', '--revoke-old']), { id: '0123456789abcdef', revokeOld: true, expiresInMs: 3_600_000 });
  });

  it('refuses a missing id, a flag in its place, other flags and stray words with a UsageError', () => {
    for (const args of [[], ['--revoke-old'], ['id', '--client', 'x'], ['id', '--label', 'x'], ['id', 'extra'], ['id', '--expires-in'], ['id', '--expires-in', 'soon']]) {
      assert.throws(() => parseRotate(args), UsageError, JSON.stringify(args));
    }
  });
});
