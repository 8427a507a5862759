import assert from 'node:assert/strict';
import { SchemaRegistry } from '../../../../services/broker/validate/schemas';
import { RequestValidator } from '../../../../services/broker/validate/validator';
import { ApiError } from '../../../../services/common/errors/api-error';
import type { JsonLimits } from '../../../../services/common/json/limits';
import type { RequestEnvelope } from '../../../../services/common/queue/envelope';

const ID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const TOKEN = 'nst_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const limits: JsonLimits = { maxBytes: 4096, maxDepth: 6, maxKeys: 40, maxStringLength: 512 };

const registry = SchemaRegistry.fromSchemas([
  {
    collection: 'notes',
    schema: {
      type: 'object',
      properties: {
        title: { type: 'string', maxLength: 100 },
        code: { type: 'string', pattern: '^[A-Z]{3}$' },
        kind: { enum: ['memo', 'task'] },
        n: { type: 'integer' },
        tags: { type: 'array', items: { type: 'string' } },
        meta: { type: 'object' },
        deep: {},
      },
      required: ['title'],
      additionalProperties: false,
    },
  },
]);
const validator = new RequestValidator(registry, limits);

function post(body: string | undefined, overrides: Partial<RequestEnvelope> = {}): RequestEnvelope {
  return { v: 2, id: ID, gw: 'gw-1', budgetMs: 1000, method: 'POST', collection: 'notes', token: TOKEN, ...(body === undefined ? {} : { body }), ...overrides };
}

function get(recordId: string | undefined, overrides: Partial<RequestEnvelope> = {}): RequestEnvelope {
  return { v: 2, id: ID, gw: 'gw-1', budgetMs: 1000, method: 'GET', collection: 'notes', token: TOKEN, ...(recordId === undefined ? {} : { recordId }), ...overrides };
}

function refused(env: RequestEnvelope, code: string, status: number): ApiError {
  try {
    validator.check(env);
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, `code for ${err.message}`);
    assert.equal(err.status, status);
    return err;
  }
  assert.fail(`expected ${code}`);
}

const nested = (depth: number): string => '{"deep":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);

describe('RequestValidator', () => {
  describe('refuses hostile bodies', () => {
    const corpus: { name: string; body: string; code: string; status: number }[] = [
      { name: 'a top-level $where operator', body: '{"title":"x","$where":"sleep(1000)"}', code: 'forbidden_key', status: 422 },
      { name: 'only a $where operator', body: '{"$where":"this.a == 1"}', code: 'forbidden_key', status: 422 },
      { name: 'a nested $gt operator', body: '{"title":"x","meta":{"$gt":1}}', code: 'forbidden_key', status: 422 },
      { name: 'an operator inside an array', body: '{"title":"x","tags":[{"$ne":null}]}', code: 'forbidden_key', status: 422 },
      { name: 'an operator deep inside', body: '{"title":"x","meta":{"a":{"b":[{"$set":{"admin":true}}]}}}', code: 'forbidden_key', status: 422 },
      { name: 'a dotted key', body: '{"title":"x","meta":{"a.b":1}}', code: 'forbidden_key', status: 422 },
      { name: 'a NUL in a key', body: '{"title":"x","meta":{"a\\u0000":1}}', code: 'forbidden_key', status: 422 },
      { name: 'a __proto__ key', body: '{"title":"x","__proto__":{"admin":true}}', code: 'forbidden_key', status: 422 },
      { name: 'a nested __proto__ key', body: '{"title":"x","meta":{"__proto__":{"admin":true}}}', code: 'forbidden_key', status: 422 },
      { name: 'a constructor key', body: '{"title":"x","meta":{"constructor":{"prototype":{"admin":true}}}}', code: 'forbidden_key', status: 422 },
      { name: 'a prototype key', body: '{"title":"x","prototype":1}', code: 'forbidden_key', status: 422 },
      { name: 'nesting one beyond the limit', body: nested(7), code: 'too_deep', status: 422 },
      { name: 'a million brackets', body: '['.repeat(1_000_000), code: 'body_too_large', status: 413 },
      { name: 'deep arrays within the byte limit', body: `{"title":"x","deep":${'['.repeat(100)}${']'.repeat(100)}}`, code: 'too_deep', status: 422 },
      { name: 'too many keys', body: JSON.stringify({ title: 'x', meta: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i])) }), code: 'too_many_keys', status: 422 },
      { name: 'a too long string value', body: JSON.stringify({ title: 'x', meta: { s: 'y'.repeat(513) } }), code: 'string_too_long', status: 422 },
      { name: 'a too long key', body: JSON.stringify({ title: 'x', meta: { ['k'.repeat(513)]: 1 } }), code: 'string_too_long', status: 422 },
      { name: 'a lone high surrogate', body: '{"title":"\\ud800"}', code: 'bad_encoding', status: 400 },
      { name: 'a lone low surrogate in a key', body: '{"title":"x","meta":{"\\udfff":1}}', code: 'bad_encoding', status: 400 },
      { name: 'an array body', body: '[{"title":"x"}]', code: 'not_an_object', status: 422 },
      { name: 'a string body', body: '"title"', code: 'not_an_object', status: 422 },
      { name: 'a number body', body: '42', code: 'not_an_object', status: 422 },
      { name: 'a null body', body: 'null', code: 'not_an_object', status: 422 },
      { name: 'invalid JSON', body: '{"title":"x",}', code: 'bad_json', status: 400 },
      { name: 'an empty body', body: '', code: 'bad_json', status: 400 },
      { name: 'a body over the byte limit', body: JSON.stringify({ title: 'x', meta: { a: 'é'.repeat(2100) } }), code: 'body_too_large', status: 413 },
    ];
    for (const { name, body, code, status } of corpus) {
      it(`refuses ${name} with ${code} ${status}`, () => {
        refused(post(body), code, status);
      });
    }
  });

  it('refuses a POST without a body as bad JSON', () => {
    refused(post(undefined), 'bad_json', 400);
  });

  describe('reports schema violations by path without echoing the value', () => {
    const cases: { name: string; body: Record<string, unknown>; value: string; path: RegExp }[] = [
      { name: 'a missing required property', body: { kind: 'SECRETVALUE-1' }, value: 'SECRETVALUE-1', path: /^record must have required property 'title'$/ },
      { name: 'an additional property', body: { title: 'x', extra: 'SECRETVALUE-2' }, value: 'SECRETVALUE-2', path: /^record must NOT have additional properties/ },
      { name: 'a wrong type', body: { title: 'x', n: 'SECRETVALUE-3' }, value: 'SECRETVALUE-3', path: /^\/n must be integer$/ },
      { name: 'a wrong type in an array', body: { title: 'x', tags: ['a', 918273645] }, value: '918273645', path: /^\/tags\/1 must be string$/ },
      { name: 'a pattern mismatch', body: { title: 'x', code: 'SECRETVALUE-4' }, value: 'SECRETVALUE-4', path: /^\/code must match pattern/ },
      { name: 'a value outside an enum', body: { title: 'x', kind: 'SECRETVALUE-5' }, value: 'SECRETVALUE-5', path: /^\/kind must be equal to one of the allowed values$/ },
      { name: 'a too long title', body: { title: 'SECRETVALUE-6'.repeat(10) }, value: 'SECRETVALUE-6', path: /^\/title must NOT have more than 100 characters$/ },
    ];
    for (const { name, body, value, path } of cases) {
      it(`for ${name}`, () => {
        const err = refused(post(JSON.stringify(body)), 'schema_violation', 422);
        assert.match(err.message, path);
        assert.ok(!err.message.includes(value), `message echoes the value: ${err.message}`);
      });
    }
  });

  it('refuses an unknown collection with 404', () => {
    const err = refused(post('{"title":"x"}', { collection: 'secrets' }), 'unknown_collection', 404);
    assert.match(err.message, /secrets/);
  });

  it('refuses an invalid collection name before anything else', () => {
    for (const collection of ['$cmd', 'system.users', 'Notes', 'a.b', '']) refused(post('{"title":"x"}', { collection }), 'bad_collection', 400);
  });

  it('refuses a malformed token with 401 without echoing it', () => {
    for (const token of ['', 'short', 'nst_{"$gt":""}_x', 'has space in it', 'a'.repeat(513), `${TOKEN}\n`, 'tok"en"with;quotes']) {
      const err = refused(post('{"title":"x"}', { token }), 'unauthenticated', 401);
      if (token.length > 0) assert.ok(!err.message.includes(token));
    }
  });

  it('refuses a GET with a record id that is not a UUID', () => {
    for (const recordId of ['1', '{"$gt":""}', ID.toUpperCase(), `${ID} `]) refused(get(recordId), 'bad_record_id', 400);
    refused(get(undefined), 'bad_record_id', 400);
  });

  it('refuses a GET with a body', () => {
    refused(get(ID, { body: '{"title":"x"}' }), 'bad_request', 400);
    refused(get(ID, { body: '' }), 'bad_request', 400);
  });

  it('refuses a POST that names a record id', () => {
    refused(post('{"title":"x"}', { recordId: ID }), 'bad_request', 400);
  });

  it('passes a valid POST and returns the parsed record', () => {
    const body = { title: 'hello', code: 'ABC', kind: 'task', n: 3, tags: ['a', 'b'], meta: { nested: { ok: true, list: [1, 'é', null] } } };
    assert.deepEqual(validator.check(post(JSON.stringify(body))), { method: 'POST', collection: 'notes', token: TOKEN, record: body });
  });

  it('passes a POST nested exactly to the depth limit', () => {
    const result = validator.check(post(`{"title":"x","deep":${nested(5)}}`));
    assert.equal(result.method, 'POST');
  });

  it('passes a valid GET and returns the record id', () => {
    assert.deepEqual(validator.check(get(ID)), { method: 'GET', collection: 'notes', token: TOKEN, recordId: ID });
  });

  describe('LIST and DELETE', () => {
    const list = (query: unknown, overrides: Partial<RequestEnvelope> = {}): RequestEnvelope =>
      ({ v: 2, id: ID, gw: 'gw-1', budgetMs: 1000, method: 'LIST', collection: 'notes', token: TOKEN, ...(query === undefined ? {} : { query }), ...overrides }) as RequestEnvelope;
    const erase = (recordId: string | undefined, overrides: Partial<RequestEnvelope> = {}): RequestEnvelope => ({ ...get(recordId, overrides), method: 'DELETE' });

    it('passes a LIST with each parameter, and one with none, returning only the checked fields', () => {
      const query = { limit: 100, cursor: 'AQAAAZ-_x', createdFrom: '2026-11-28T10:00:00Z', createdTo: '2026-11-28T11:00:00.5+01:00' };
      assert.deepEqual(validator.check(list(query)), { method: 'LIST', collection: 'notes', token: TOKEN, query });
      assert.deepEqual(validator.check(list(undefined)), { method: 'LIST', collection: 'notes', token: TOKEN, query: {} });
    });

    it('refuses a LIST whose query holds an operator object, an array, a limit out of range or an unknown key, with 400 bad_query and without echoing it', () => {
      // What a compromised gateway could put in an envelope that decoded (or a decoder that let it through).
      const bad: unknown[] = [
        { createdFrom: { $ne: 'x' } },
        { cursor: { $gt: '' } },
        { cursor: ['AAAA', 'BBBB'] },
        { createdTo: ['2026-11-28T10:00:00Z'] },
        { limit: 0 },
        { limit: -5 },
        { limit: 101 },
        { limit: 1e12 },
        { limit: '20' },
        { limit: 2.5 },
        { $where: 'sleep(1000)' },
        { sort: 'SECRET-VALUE' },
        { cursor: 'has space' },
        { cursor: 'a'.repeat(513) },
        { cursor: '' },
        { createdFrom: '2026-11-28 10:00:00' },
        { createdFrom: '2026-11-28T10:00:00' },
        { createdFrom: '2026-02-30T10:00:00Z' },
        { createdTo: '1700000000000' },
        ['limit', 5],
        'limit=5',
        null,
      ];
      for (const query of bad) {
        const err = refused(list(query), 'bad_query', 400);
        assert.ok(!err.message.includes('SECRET-VALUE'), err.message);
      }
    });

    it('refuses a LIST with a record id, a body or an Idempotency-Key', () => {
      refused(list(undefined, { recordId: ID }), 'bad_request', 400);
      refused(list(undefined, { body: '{}' }), 'bad_request', 400);
      refused(list(undefined, { key: 'k1' }), 'bad_request', 400);
    });

    it('refuses a query on anything but a LIST', () => {
      refused(get(ID, { query: { limit: 5 } }), 'bad_query', 400);
      refused(erase(ID, { query: { limit: 5 } }), 'bad_query', 400);
      refused(post('{"title":"x"}', { query: { limit: 5 } }), 'bad_query', 400);
    });

    it('passes a DELETE of a UUID and refuses one of anything else, or with a body or an Idempotency-Key', () => {
      assert.deepEqual(validator.check(erase(ID)), { method: 'DELETE', collection: 'notes', token: TOKEN, recordId: ID });
      for (const recordId of ['1', '{"$gt":""}', ID.toUpperCase(), `${ID} `]) refused(erase(recordId), 'bad_record_id', 400);
      refused(erase(undefined), 'bad_record_id', 400);
      refused(erase(ID, { body: '' }), 'bad_request', 400);
      refused(erase(ID, { key: 'k1' }), 'bad_request', 400);
    });

    it('refuses LIST and DELETE on an unknown collection, a bad name or a malformed token, as for POST', () => {
      refused(list(undefined, { collection: 'secrets' }), 'unknown_collection', 404);
      refused(erase(ID, { collection: '$cmd' }), 'bad_collection', 400);
      refused(list(undefined, { token: 'nst_{"$gt":""}_x' }), 'unauthenticated', 401);
    });
  });
});
