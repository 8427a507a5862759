import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ApiError } from '../../../../services/common/errors/api-error';
import { DataKeyRing } from '../../../../services/core/storage/data-keys';
import { decodeCursor, encodeCursor, type CursorScope } from '../../../../services/core/storage/list-cursor';

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const ring = DataKeyRing.of({ active: 'key-a', keys: new Map([['key-a', keyA]]) });
const rotated = DataKeyRing.of({ active: 'key-b', keys: new Map([['key-a', keyA], ['key-b', keyB]]) });
const retired = DataKeyRing.of({ active: 'key-b', keys: new Map([['key-b', keyB]]) });

const scope: CursorScope = { collection: 'notes', fromMs: undefined, toMs: undefined };
const position = { createdAt: new Date('2026-11-28T10:00:00.123Z'), id: '0f8fad5b-d9cb-469f-a165-70867728950e' };

function badCursor(fn: () => unknown, what: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ApiError && err.code === 'bad_cursor' && err.status === 400, what);
}

describe('list cursors', () => {
  const cursor = encodeCursor(ring, scope, position);

  it('decode to the position they were made from, for the same collection and filters', () => {
    assert.match(cursor, /^[A-Za-z0-9_-]+$/);
    assert.ok(cursor.length <= 512, `${cursor.length} characters`);
    assert.deepEqual(decodeCursor(ring, scope, cursor), position);
    const filtered = { collection: 'notes', fromMs: 1_000, toMs: 2_000 };
    assert.deepEqual(decodeCursor(ring, filtered, encodeCursor(ring, filtered, position)), position);
  });

  it("are refused for another collection or other filters", () => {
    badCursor(() => decodeCursor(ring, { ...scope, collection: 'orders' }, cursor), 'another collection');
    badCursor(() => decodeCursor(ring, { ...scope, fromMs: 0 }, cursor), 'a createdFrom added');
    badCursor(() => decodeCursor(ring, { ...scope, toMs: 1 }, cursor), 'a createdTo added');
    const filtered = { collection: 'notes', fromMs: 1_000, toMs: 2_000 };
    const withFilters = encodeCursor(ring, filtered, position);
    badCursor(() => decodeCursor(ring, { ...filtered, toMs: 2_001 }, withFilters), 'createdTo changed');
    badCursor(() => decodeCursor(ring, scope, withFilters), 'filters dropped');
  });

  it('are refused when any bit is flipped, when cut, extended, or spelled another way', () => {
    const bytes = Buffer.from(cursor, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const t = Buffer.from(bytes);
        t[i]! ^= bit;
        badCursor(() => decodeCursor(ring, scope, t.toString('base64url')), `byte ${i} bit ${bit}`);
      }
    }
    badCursor(() => decodeCursor(ring, scope, cursor.slice(0, -1)), 'cut by one character');
    badCursor(() => decodeCursor(ring, scope, bytes.subarray(0, bytes.length - 1).toString('base64url')), 'cut by one byte');
    badCursor(() => decodeCursor(ring, scope, Buffer.concat([bytes, Buffer.from([0])]).toString('base64url')), 'a byte appended');
    badCursor(() => decodeCursor(ring, scope, `${cursor}=`), 'padded');
    badCursor(() => decodeCursor(ring, scope, bytes.toString('base64')), 'standard base64');
  });

  it('never put anything but a time and a UUID into a position: JSON, operators and garbage are refused', () => {
    const texts = [
      Buffer.from('{"$gt":""}').toString('base64url'),
      Buffer.from('{"createdAt":{"$gt":0},"id":{"$ne":null}}').toString('base64url'),
      Buffer.from('[1,2]').toString('base64url'),
      '',
      'AAAA',
      randomBytes(122).toString('base64url'),
      'a'.repeat(512),
    ];
    for (const text of texts) badCursor(() => decodeCursor(ring, scope, text), text);
  });

  it('stay valid after a key rotation until their key is retired', () => {
    assert.deepEqual(decodeCursor(rotated, scope, cursor), position);
    badCursor(() => decodeCursor(retired, scope, cursor), 'retired key');
    // A key with the same id but other bytes (another deployment's key file) is refused too.
    const other = DataKeyRing.of({ active: 'key-a', keys: new Map([['key-a', randomBytes(32)]]) });
    badCursor(() => decodeCursor(other, scope, cursor), 'another key under the same id');
  });
});
