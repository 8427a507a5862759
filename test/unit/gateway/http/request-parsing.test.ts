import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../../../../services/common/errors/api-error';
import {
  bearerToken,
  collectionParam,
  idempotencyKey,
  recordIdParam,
  requireJsonContentType,
} from '../../../../services/gateway/http/request-parsing';

/** Asserts `fn` throws an ApiError with this code and status. */
function refuses(fn: () => unknown, code: string, status: number, label?: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ApiError && err.code === code && err.status === status, label);
}

describe('bearerToken', () => {
  const token = 'nst_0123456789abcdefABCDEF._~+/-';

  it('returns the token of a well-formed Bearer header', () => {
    assert.equal(bearerToken(`Bearer ${token}`), token);
    assert.equal(bearerToken('Bearer abcdefgh'), 'abcdefgh');
    assert.equal(bearerToken(`Bearer ${'a'.repeat(512)}`), 'a'.repeat(512));
  });

  it('accepts the scheme in any case and base64 padding', () => {
    assert.equal(bearerToken('bearer abcdefgh'), 'abcdefgh');
    assert.equal(bearerToken('BEARER abcdefgh'), 'abcdefgh');
    assert.equal(bearerToken('Bearer YWJjZGVmZ2hpams=='), 'YWJjZGVmZ2hpams==');
  });

  it('tolerates surrounding whitespace', () => {
    assert.equal(bearerToken(`  Bearer ${token}\t`), token);
  });

  it('refuses a missing header with 401', () => {
    refuses(() => bearerToken(undefined), 'unauthenticated', 401);
  });

  it('refuses other schemes and bare tokens', () => {
    for (const header of ['', 'Bearer', 'Bearer ', `Basic ${token}`, token, `Token ${token}`, `Bearer: ${token}`, `Bearer${token}`]) {
      refuses(() => bearerToken(header), 'unauthenticated', 401, JSON.stringify(header));
    }
  });

  it('refuses tokens shorter than 8 or longer than 512 characters', () => {
    refuses(() => bearerToken('Bearer abcdefg'), 'unauthenticated', 401);
    refuses(() => bearerToken(`Bearer ${'a'.repeat(513)}`), 'unauthenticated', 401);
  });

  it('refuses header injection and smuggling attempts', () => {
    const attempts = [
      `Bearer ${token}\r\nX-Admin: 1`,
      `Bearer ${token}\nX-Admin: 1`,
      `Bearer ${token}\r\n\r\nGET / HTTP/1.1`,
      `Bearer ${token}\u0000`,
      `Bearer ${token} ${token}`,
      `Bearer  ${token}`,
      `Bearer ${token},Bearer other12345`,
      `Bearer "${token}"`,
      `Bearer ${token};admin=1`,
      `Bearer tökenwithumlaut`,
      `Bearer ${token}==x`,
      `Bearer =${token}`,
      'Bearer ${jndi:ldap://x}',
      "Bearer ' OR 1=1 --",
    ];
    for (const header of attempts) refuses(() => bearerToken(header), 'unauthenticated', 401, JSON.stringify(header));
  });
});

describe('collectionParam', () => {
  it('accepts lowercase names starting with a letter, up to 63 characters', () => {
    for (const name of ['orders', 'a', 'order_items_2024', 'x9', `a${'b'.repeat(62)}`]) assert.equal(collectionParam(name), name);
  });

  it('refuses names that MongoDB or a query could misread', () => {
    const bad = ['$where', 'orders$', 'system.users', 'a.b', '.orders', 'Orders', 'ORDERS', '1orders', '_orders', 'or-ders', 'or ders', '', 'orders\n', 'ordérs', '__proto__'];
    for (const name of bad) refuses(() => collectionParam(name), 'bad_collection', 400, JSON.stringify(name));
  });

  it('refuses names longer than 63 characters', () => {
    refuses(() => collectionParam(`a${'b'.repeat(63)}`), 'bad_collection', 400);
  });

  it('refuses values that are not strings', () => {
    for (const v of [undefined, null, 42, ['orders'], { name: 'orders' }]) refuses(() => collectionParam(v), 'bad_collection', 400);
  });
});

describe('recordIdParam', () => {
  it('accepts a canonical lowercase UUID', () => {
    const id = randomUUID();
    assert.equal(recordIdParam(id), id);
  });

  it('refuses anything else', () => {
    const id = randomUUID();
    const bad = [id.toUpperCase(), id.replace(/-/g, ''), `{${id}}`, `${id}\n`, ` ${id}`, `${id}0`, id.slice(1), '', 'not-a-uuid', { $ne: null }, 1, undefined];
    for (const v of bad) refuses(() => recordIdParam(v), 'bad_record_id', 400, JSON.stringify(v));
  });
});

describe('idempotencyKey', () => {
  it('is optional', () => {
    assert.equal(idempotencyKey(undefined), undefined);
  });

  it('accepts 1 to 128 printable ASCII characters', () => {
    for (const key of ['a', 'order-42', '!~"#$%&()*+,-./:;<=>?@[\\]^_`{|}', 'k'.repeat(128), randomUUID()]) assert.equal(idempotencyKey(key), key);
  });

  it('refuses empty, too long, whitespace, control and non-ASCII keys', () => {
    const bad = ['', 'k'.repeat(129), 'a b', ' key', 'key\t', 'key\r\nX-Admin: 1', 'key\u0000', 'key\u007f', 'clé', '🔑'];
    for (const key of bad) refuses(() => idempotencyKey(key), 'bad_request', 400, JSON.stringify(key));
  });
});

describe('requireJsonContentType', () => {
  it('accepts application/json with no charset or a UTF-8 charset, in any case and quoting', () => {
    const ok = [
      'application/json',
      'Application/JSON',
      'application/json; charset=utf-8',
      'application/json;charset=UTF-8',
      'application/json; charset="utf-8"',
      'application/json; charset=utf8',
      'application/json ; charset = utf-8 ',
      'application/json; version=1',
    ];
    for (const h of ok) assert.doesNotThrow(() => requireJsonContentType(h), h);
  });

  it('refuses a missing content type with 415', () => {
    refuses(() => requireJsonContentType(undefined), 'unsupported_media_type', 415);
  });

  it('refuses other media types', () => {
    const bad = ['', 'text/plain', 'text/json', 'application/jsonx', 'application/json-patch+json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json, text/plain', '*/*'];
    for (const h of bad) refuses(() => requireJsonContentType(h), 'unsupported_media_type', 415, h);
  });

  it('refuses charsets other than UTF-8', () => {
    const bad = ['application/json; charset=iso-8859-1', 'application/json; charset=utf-16', 'application/json; charset=UTF-32LE', 'application/json; charset=', 'application/json; charset', 'application/json; charset=utf-8; charset=latin1'];
    for (const h of bad) refuses(() => requireJsonContentType(h), 'unsupported_media_type', 415, h);
  });
});
