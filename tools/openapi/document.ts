/**
 * The OpenAPI 3.1 document of the public API (what clients reach through the gateway),
 * built from the collections' JSON Schemas. Pure: render.ts reads the schemas and writes
 * the JSON; docs/openapi.json is its output for config/schemas, and a unit test fails
 * when the two differ.
 *
 * Per-collection paths, not one path with a oneOf body: the collection is in the URL, not
 * in the body, so no discriminator could tell a client which schema a body must match,
 * and the collections' schemas are closed objects that can overlap (`{}` fits neither,
 * a body with only optional fields may fit several). A path per collection gives each
 * generated method its exact request and response types (`notes_create(body: notes)`).
 * The templated paths (/v1/records/{collection}) stay beside them for collections added to
 * SCHEMA_DIR after the document was generated (data is then any object, which the broker
 * still validates), and because they are what answers a bad or unknown collection name.
 * OpenAPI matches a concrete path before a templated one.
 */
import { ErrorCodes } from '../../services/common/errors/codes';
import { REQUEST_ID } from '../../services/common/ids/names';
import { DOCUMENTED_ERRORS, type DocumentedError } from './error-codes';

type Json = Record<string, unknown>;

export interface DocumentInput {
  /** Collection name → its JSON Schema, as the broker loads it from SCHEMA_DIR. */
  collections: Record<string, Json>;
  version: string;
  /** The gateway's base URL, e.g. https://api.example.com; omitted: server variables. */
  serverUrl?: string;
}

/** List pages: the contract's bounds (limit 1..100, default 20; cursors up to 512 characters). */
export const LIST_LIMIT = { minimum: 1, maximum: 100, default: 20 } as const;
export const CURSOR_MAX_LENGTH = 512;
/** The gateway's Idempotency-Key rule (gateway/http/request-parsing.ts): 1-128 printable ASCII. */
export const IDEMPOTENCY_KEY_PATTERN = '^[!-~]{1,128}$';
/** isCollectionName in services/common/ids/names.ts. */
export const COLLECTION_NAME_PATTERN = '^[a-z][a-z0-9_]{0,62}$';

const ref = (kind: string, name: string): Json => ({ $ref: `#/components/${kind}/${name}` });
const schemaRef = (name: string): Json => ref('schemas', name);

/** Statuses every operation can answer: nginx's and the gateway's checks, auth, and the chain's failures. */
const COMMON_STATUSES = [400, 401, 403, 404, 408, 413, 414, 429, 500, 502, 503, 504];
const STATUSES = {
  create: [...COMMON_STATUSES, 409, 415, 422, 507],
  get: COMMON_STATUSES,
  list: COMMON_STATUSES,
  erase: [...COMMON_STATUSES, 507],
};

function errorsByStatus(): Map<number, DocumentedError[]> {
  const by = new Map<number, DocumentedError[]>();
  for (const e of DOCUMENTED_ERRORS) by.set(e.status, [...(by.get(e.status) ?? []), e]);
  return new Map([...by.entries()].sort(([a], [b]) => a - b));
}

function errorSchema(errors: DocumentedError[]): Json {
  return {
    type: 'object',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message', 'stored'],
        additionalProperties: false,
        properties: {
          code: { enum: errors.map((e) => e.code) },
          message: { type: 'string', description: 'For people; never parse it. It names the rule broken, never echoes the request.' },
          stored: schemaRef('Stored'),
        },
      },
    },
  };
}

function errorResponse(status: number, errors: DocumentedError[]): Json {
  const headers: Json = { 'x-request-id': ref('headers', 'RequestIdIfQueued') };
  if (status === 503) headers['Retry-After'] = ref('headers', 'RetryAfter');
  if (status === 405) headers.Allow = ref('headers', 'Allow');
  const lines = errors.map((e) => `- \`${e.code}\` (stored: ${e.stored}): ${e.meaning}`);
  const other = status === 405 ? ' Every path answers a method it does not list with this response.' : '';
  return {
    description: `${lines.join('\n')}${other}`,
    headers,
    content: { 'application/json': { schema: schemaRef(`Error${status}`) } },
  };
}

function errorResponses(statuses: number[]): Json {
  return Object.fromEntries([...statuses].sort((a, b) => a - b).map((s) => [String(s), ref('responses', `Error${s}`)]));
}

function ok(description: string, schema: Json): Json {
  return { description, headers: { 'x-request-id': ref('headers', 'RequestId') }, content: { 'application/json': { schema } } };
}

/** A page of records whose items are `record` or an unreadable record's stub. */
function pageSchema(record: Json): Json {
  return {
    type: 'object',
    required: ['records', 'nextCursor'],
    additionalProperties: false,
    properties: {
      records: { type: 'array', maxItems: LIST_LIMIT.maximum, items: { oneOf: [record, schemaRef('UnreadableRecord')] } },
      nextCursor: { oneOf: [schemaRef('Cursor'), { type: 'null' }], description: 'Pass it as `cursor` for the next page; null on the last page.' },
    },
  };
}

function recordSchema(collection: Json, data: Json): Json {
  return {
    type: 'object',
    required: ['id', 'collection', 'data', 'createdAt'],
    additionalProperties: false,
    properties: { id: schemaRef('RecordId'), collection, data, createdAt: schemaRef('Timestamp') },
  };
}

interface Operations {
  collection: Json;
  item: Json;
}

/** The four operations on one collection's paths (or on the templated ones). */
function operations(name: string | undefined, body: Json, record: Json, page: Json): Operations {
  const on = name === undefined ? 'a collection' : `\`${name}\``;
  const id = (op: string): string => (name === undefined ? `${op}Record${op === 'list' ? 's' : ''}` : `${name}_${op}`);
  const tags = [name ?? 'any collection'];
  return {
    collection: {
      post: {
        operationId: id('create'),
        tags,
        summary: `Store a record in ${on}`,
        description:
          'Scope `write`. The broker validates the body against the collection’s JSON Schema, core stores it encrypted. ' +
          'With an Idempotency-Key, a retry of the same body (compared key-order-insensitively) answers the same id, so a client may retry after any error and converge on one record; ' +
          'after an error whose `stored` is `no` it may also give up and be sure nothing was stored.',
        parameters: [ref('parameters', 'IdempotencyKey')],
        requestBody: { required: true, content: { 'application/json': { schema: body } } },
        responses: { '201': ok('Stored (or already stored under this Idempotency-Key).', schemaRef('CreatedRecord')), ...errorResponses(STATUSES.create) },
      },
      get: {
        operationId: id('list'),
        tags,
        summary: `List the records of ${on}`,
        description:
          'Scope `read`. Oldest first (createdAt, then id); a record stored while paging is never returned twice. ' +
          'A page holds at most `limit` records and about 1 MiB of JSON (always at least one record). ' +
          'A record core cannot decrypt is listed as a stub with `error: record_unreadable`, so it never blocks the rest.',
        parameters: ['Limit', 'Cursor', 'CreatedFrom', 'CreatedTo'].map((p) => ref('parameters', p)),
        responses: { '200': ok('A page of records.', page), ...errorResponses(STATUSES.list) },
      },
    },
    item: {
      parameters: [ref('parameters', 'RecordId')],
      get: {
        operationId: id('get'),
        tags,
        summary: `Read a record of ${on}`,
        description: 'Scope `read`. A record in another collection is not found here.',
        responses: { '200': ok('The record.', record), ...errorResponses(STATUSES.get) },
      },
      delete: {
        operationId: id('delete'),
        tags,
        summary: `Erase a record of ${on}`,
        description:
          'Scope `delete`. Idempotent: the same answer whether the record existed, was already erased, never existed, or is in another collection (which is left untouched).',
        responses: { '200': ok('Erased (or not there).', schemaRef('ErasedRecord')), ...errorResponses(STATUSES.erase) },
      },
    },
  };
}

export function buildOpenApiDocument(input: DocumentInput): Json {
  const names = Object.keys(input.collections).sort();
  const byStatus = errorsByStatus();
  const paths: Json = {};
  const schemas: Json = {};
  for (const name of names) {
    schemas[name] = input.collections[name];
    schemas[`Record_${name}`] = recordSchema({ const: name }, schemaRef(name));
    const ops = operations(name, schemaRef(name), schemaRef(`Record_${name}`), pageSchema(schemaRef(`Record_${name}`)));
    paths[`/v1/records/${name}`] = ops.collection;
    paths[`/v1/records/${name}/{id}`] = ops.item;
  }
  const anyCollection = operations(undefined, { type: 'object', description: 'A record of the collection; the broker validates it against the collection’s JSON Schema.' }, schemaRef('Record'), pageSchema(schemaRef('Record')));
  paths['/v1/records/{collection}'] = { parameters: [ref('parameters', 'Collection')], ...anyCollection.collection };
  paths['/v1/records/{collection}/{id}'] = { ...anyCollection.item, parameters: [ref('parameters', 'Collection'), ref('parameters', 'RecordId')] };

  Object.assign(schemas, {
    RecordId: { type: 'string', pattern: REQUEST_ID.source, description: 'A UUID in lowercase canonical form.' },
    Timestamp: { type: 'string', format: 'date-time', description: 'RFC 3339, UTC, with milliseconds.' },
    Cursor: { type: 'string', pattern: '^[A-Za-z0-9_-]+$', minLength: 1, maxLength: CURSOR_MAX_LENGTH, description: 'Opaque base64url text; bound to the collection and filters it was issued for.' },
    Stored: {
      enum: ['no', 'unknown'],
      description: '`no`: the write is known not stored. `unknown`: it may have been stored; retry with the same Idempotency-Key to converge on one record.',
    },
    CreatedRecord: { type: 'object', required: ['id'], additionalProperties: false, properties: { id: schemaRef('RecordId') } },
    ErasedRecord: { type: 'object', required: ['id', 'erased'], additionalProperties: false, properties: { id: schemaRef('RecordId'), erased: { const: true } } },
    Record: recordSchema({ type: 'string', pattern: COLLECTION_NAME_PATTERN }, { type: 'object' }),
    UnreadableRecord: {
      type: 'object',
      required: ['id', 'collection', 'createdAt', 'error'],
      additionalProperties: false,
      description: 'A listed record core cannot decrypt: no data.',
      properties: { id: schemaRef('RecordId'), collection: { type: 'string' }, createdAt: schemaRef('Timestamp'), error: { const: ErrorCodes.recordUnreadable.code } },
    },
  });
  const responses: Json = {};
  for (const [status, errors] of byStatus) {
    schemas[`Error${status}`] = errorSchema(errors);
    responses[`Error${status}`] = errorResponse(status, errors);
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Nonstop',
      version: input.version,
      summary: 'Store and read sensitive records through a public gateway that does not reveal where they live.',
      description:
        'Every request goes gateway → queue → broker → core; each tier validates it again. ' +
        'Errors are always `{"error":{"code","message","stored"}}`: clients key on `code` (stable) and `stored`. ' +
        `The collections here are the ones this document was generated for; regenerate it for your SCHEMA_DIR (node dist/tools/openapi/render.js).`,
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers:
      input.serverUrl !== undefined
        ? [{ url: input.serverUrl, description: 'The gateway' }]
        : [{ url: 'https://{host}:{port}', description: 'The gateway', variables: { host: { default: 'localhost' }, port: { default: '443' } } }],
    security: [{ bearerToken: [] }],
    tags: [
      ...names.map((n) => {
        const title = input.collections[n]?.title;
        return typeof title === 'string' ? { name: n, description: title } : { name: n };
      }),
      { name: 'any collection', description: 'Any collection by name, including ones this document was not generated for.' },
    ],
    paths,
    components: {
      schemas,
      responses,
      parameters: {
        Collection: { name: 'collection', in: 'path', required: true, schema: { type: 'string', pattern: COLLECTION_NAME_PATTERN } },
        RecordId: { name: 'id', in: 'path', required: true, schema: schemaRef('RecordId') },
        IdempotencyKey: {
          name: 'Idempotency-Key',
          in: 'header',
          required: false,
          description: 'Makes the write idempotent per token client, collection and key. 1-128 printable ASCII characters.',
          schema: { type: 'string', pattern: IDEMPOTENCY_KEY_PATTERN },
        },
        Limit: { name: 'limit', in: 'query', required: false, schema: { type: 'integer', ...LIST_LIMIT } },
        Cursor: { name: 'cursor', in: 'query', required: false, description: 'The previous page’s nextCursor, as it was.', schema: schemaRef('Cursor') },
        CreatedFrom: { name: 'createdFrom', in: 'query', required: false, description: 'Inclusive; RFC 3339 with a time zone.', schema: { type: 'string', format: 'date-time' } },
        CreatedTo: { name: 'createdTo', in: 'query', required: false, description: 'Exclusive; RFC 3339 with a time zone.', schema: { type: 'string', format: 'date-time' } },
      },
      headers: {
        RequestId: { description: 'The request’s id through every tier (logs, support).', required: true, schema: schemaRef('RecordId') },
        RequestIdIfQueued: { description: 'Present when the request got as far as the queue (absent on errors the gateway answers itself).', required: false, schema: schemaRef('RecordId') },
        RetryAfter: { description: 'Seconds to wait before retrying (sent with `overloaded`).', required: false, schema: { type: 'integer', minimum: 0 } },
        Allow: { description: 'The methods the path takes.', required: false, schema: { type: 'string' } },
      },
      securitySchemes: {
        bearerToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'A token from `nonstop-admin token create --collections a,b --scopes read,write,delete`; each operation names the scope it needs.',
        },
      },
    },
  };
}
