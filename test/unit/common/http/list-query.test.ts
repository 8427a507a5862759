import assert from 'node:assert/strict';
import { ApiError } from '../../../../services/common/errors/api-error';
import { checkListQuery, listQueryString, parseListQuery, timestampMs } from '../../../../services/common/http/list-query';

function badQuery(fn: () => unknown, what: string): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, `${what}: expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, 'bad_query', what);
    assert.equal(err.status, 400, what);
    return err;
  }
  assert.fail(`${what}: expected bad_query`);
}

describe('list query parsing', () => {
  it('reads the four parameters from a URL into typed values, and none as an empty query', () => {
    assert.deepEqual(parseListQuery('/v1/records/notes?limit=100&cursor=AQID-_x&createdFrom=2026-11-28T10:00:00Z&createdTo=2026-11-29T10:00:00.250%2B01:00'), {
      limit: 100,
      cursor: 'AQID-_x',
      createdFrom: '2026-11-28T10:00:00Z',
      createdTo: '2026-11-29T10:00:00.250+01:00',
    });
    assert.deepEqual(parseListQuery('/v1/records/notes'), {});
    assert.deepEqual(parseListQuery('/v1/records/notes?'), {});
    assert.deepEqual(parseListQuery('?limit=1'), { limit: 1 });
  });

  it('refuses an unknown parameter, a repeated one and bracketed operator names', () => {
    const cases = [
      'limit=5&limit=6',
      'cursor=AAAA&cursor=BBBB',
      'createdFrom=2026-11-28T10:00:00Z&createdFrom=2026-11-28T10:00:00Z',
      'createdFrom[$ne]=x',
      'createdFrom%5B%24ne%5D=x',
      'cursor[$gt]=',
      'limit[]=5',
      'sort=createdAt',
      '$where=sleep(1)',
      '__proto__=x',
      'Limit=5',
    ];
    for (const q of cases) {
      const err = badQuery(() => parseListQuery(`/v1/records/notes?${q}`), q);
      assert.ok(!err.message.includes('sleep'), err.message);
    }
  });

  it('refuses a limit that is not an integer from 1 to 100, as written', () => {
    for (const limit of ['0', '-1', '101', '1000', '999999999999', '1e2', '5.0', '05', '+5', ' 5', '0x10', '', 'ten', '%35%30%30']) {
      badQuery(() => parseListQuery(`?limit=${limit}`), `limit=${limit}`);
    }
    // Positive control: the edges, and a percent-encoded digit (decoded before the check).
    assert.deepEqual(parseListQuery('?limit=1'), { limit: 1 });
    assert.deepEqual(parseListQuery('?limit=100'), { limit: 100 });
    assert.deepEqual(parseListQuery('?limit=%35'), { limit: 5 });
  });

  it('refuses a cursor that is not base64url of at most 512 characters', () => {
    for (const cursor of ['', 'a b', 'abc=', 'a+b', 'a/b', 'x'.repeat(513), '%7B%22%24gt%22%3A%22%22%7D']) {
      badQuery(() => parseListQuery(`?cursor=${cursor}`), `cursor=${cursor}`);
    }
    assert.deepEqual(parseListQuery(`?cursor=${'x'.repeat(512)}`), { cursor: 'x'.repeat(512) });
  });

  it('refuses timestamps without a time zone, in other formats, or naming no real instant', () => {
    for (const t of [
      '2026-11-28T10:00:00',
      '2026-11-28 10:00:00Z',
      '2026-11-28',
      '1700000000000',
      '2026-11-28T10:00Z',
      '2026-02-29T10:00:00Z',
      '2026-02-30T10:00:00Z',
      '2026-13-01T10:00:00Z',
      '2026-11-28T24:00:00Z',
      '2026-11-28T10:60:00Z',
      '2026-11-28T10:00:60Z',
      '2026-11-28T10:00:00+24:00',
      '2026-11-28T10:00:00.1234567890Z',
      'Sat, 28 Nov 2026 10:00:00 GMT',
      '{"$gt":""}',
    ]) {
      badQuery(() => parseListQuery(`?createdFrom=${encodeURIComponent(t)}`), t);
      badQuery(() => timestampMs(t), t);
    }
    // Positive control: a leap day in a leap year.
    assert.equal(timestampMs('2028-02-29T00:00:00Z'), Date.UTC(2028, 1, 29));
  });

  it('reads the instant with its offset and rounds fractions up to the millisecond', () => {
    assert.equal(timestampMs('2026-11-28T10:00:00Z'), Date.UTC(2026, 10, 28, 10));
    assert.equal(timestampMs('2026-11-28t10:00:00z'), Date.UTC(2026, 10, 28, 10));
    assert.equal(timestampMs('2026-11-28T11:30:00+01:30'), Date.UTC(2026, 10, 28, 10));
    assert.equal(timestampMs('2026-11-28T08:00:00-02:00'), Date.UTC(2026, 10, 28, 10));
    assert.equal(timestampMs('2026-11-28T10:00:00.5Z'), Date.UTC(2026, 10, 28, 10, 0, 0, 500));
    assert.equal(timestampMs('2026-11-28T10:00:00.123Z'), Date.UTC(2026, 10, 28, 10, 0, 0, 123));
    // A record stored at .123 is before .1231, which is at or before .124.
    assert.equal(timestampMs('2026-11-28T10:00:00.1231Z'), Date.UTC(2026, 10, 28, 10, 0, 0, 124));
    assert.equal(timestampMs('2026-11-28T10:00:00.123000000Z'), Date.UTC(2026, 10, 28, 10, 0, 0, 123));
    assert.equal(timestampMs('0001-01-01T00:00:00Z'), new Date('0001-01-01T00:00:00Z').getTime());
  });

  it('checks a query object as the broker receives it: plain, the four keys, each of its type', () => {
    assert.deepEqual(checkListQuery(undefined), {});
    assert.deepEqual(checkListQuery({ limit: 5, cursor: undefined }), { limit: 5 });
    for (const q of [null, [], 'limit=5', 5, { limit: 5, extra: 1 }, { cursor: { $gt: '' } }, { createdFrom: { $ne: 'x' } }, { limit: '5' }, { limit: 101 }, Object.create({ limit: 5 }) as unknown]) {
      badQuery(() => checkListQuery(q), JSON.stringify(q) ?? String(q));
    }
  });

  it('writes a query back as the URL text that parses to the same query', () => {
    const query = { limit: 7, cursor: 'AQID-_x', createdFrom: '2026-11-28T10:00:00+01:00', createdTo: '2026-11-29T10:00:00Z' };
    const text = listQueryString(query);
    assert.equal(text, '?limit=7&cursor=AQID-_x&createdFrom=2026-11-28T10%3A00%3A00%2B01%3A00&createdTo=2026-11-29T10%3A00%3A00Z');
    assert.deepEqual(parseListQuery(text), query);
    assert.equal(listQueryString({}), '');
  });
});
