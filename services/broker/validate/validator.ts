import type { ErrorObject } from 'ajv';
import { ApiError } from '../../common/errors/api-error';
import { checkListQuery, type ListQuery } from '../../common/http/list-query';
import { isCollectionName, isRequestId, TOKEN_SHAPE } from '../../common/ids/names';
import { parseJsonRecord, type JsonLimits } from '../../common/json/limits';
import type { RequestEnvelope } from '../../common/queue/envelope';
import type { SchemaRegistry } from './schemas';

export type ValidRequest =
  | { method: 'POST'; collection: string; token: string; record: Record<string, unknown> }
  | { method: 'GET'; collection: string; token: string; recordId: string }
  | { method: 'LIST'; collection: string; token: string; query: ListQuery }
  | { method: 'DELETE'; collection: string; token: string; recordId: string };


/**
 * Decides whether a request may go on to core. The gateway is not trusted: everything it
 * put in the envelope is checked again here — names, token shape, the body's size, depth,
 * key count, string lengths, operator and prototype keys, Unicode, and the collection's
 * JSON Schema. A collection without a schema is refused. Errors name the rule broken,
 * never echo the value. Pure.
 */
export class RequestValidator {
  constructor(
    private readonly schemas: SchemaRegistry,
    private readonly limits: JsonLimits,
  ) {}

  check(env: RequestEnvelope): ValidRequest {
    if (!isCollectionName(env.collection)) throw new ApiError('badCollection', 'invalid collection name');
    if (!TOKEN_SHAPE.test(env.token)) throw new ApiError('unauthenticated', 'malformed bearer token');
    const validate = this.schemas.get(env.collection);
    if (!validate) throw new ApiError('unknownCollection', `collection ${env.collection} does not exist`);
    if (env.method !== 'POST') {
      if (env.body !== undefined) throw new ApiError('badRequest', `${env.method} carries no body`);
      if (env.key !== undefined) throw new ApiError('badRequest', `${env.method} carries no Idempotency-Key`);
    }
    if (env.method !== 'LIST' && env.query !== undefined) throw new ApiError('badQuery', `${env.method} carries no query`);
    if (env.method === 'LIST') {
      if (env.recordId !== undefined) throw new ApiError('badRequest', 'LIST names no record id');
      return { method: 'LIST', collection: env.collection, token: env.token, query: checkListQuery(env.query) };
    }
    if (env.method === 'GET' || env.method === 'DELETE') {
      if (!isRequestId(env.recordId)) throw new ApiError('badRecordId', 'record ids are UUIDs');
      return { method: env.method, collection: env.collection, token: env.token, recordId: env.recordId };
    }
    if (env.recordId !== undefined) throw new ApiError('badRequest', 'POST names no record id');
    if (env.body === undefined) throw new ApiError('badJson', 'body is missing');
    const record = parseJsonRecord(env.body, this.limits);
    if (!validate(record)) throw new ApiError('schemaViolation', describeSchemaError(validate.errors?.[0]));
    return { method: 'POST', collection: env.collection, token: env.token, record };
  }
}

function describeSchemaError(error: ErrorObject | undefined): string {
  if (!error) return 'does not match the collection schema';
  const where = error.instancePath === '' ? 'record' : error.instancePath;
  return `${where} ${error.message ?? 'is invalid'}`.slice(0, 300);
}
