import { isNonstopError } from '../common/errors/nonstop-error';
import { errorBody } from '../common/errors/api-error';
import { ErrorCodes } from '../common/errors/codes';
import type { Logger } from '../common/log/logger';
import { PROTOCOL_VERSION } from '../common/queue/keys';
import type { ReplyEnvelope, RequestEnvelope } from '../common/queue/envelope';
import type { CoreCall, CoreResponse } from './core-client/client';
import type { BrokerMetrics } from './metrics';
import type { ListQuery } from '../common/http/list-query';
import type { RequestValidator, ValidRequest } from './validate/validator';

/** Core's calls as the pipeline makes them: inserts through the group commit (insert-batcher.ts). */
export interface CoreCalls {
  insert(call: CoreCall, record: Record<string, unknown>): Promise<CoreResponse>;
  read(call: CoreCall, recordId: string): Promise<CoreResponse>;
  list(call: CoreCall, query: ListQuery): Promise<CoreResponse>;
  erase(call: CoreCall, recordId: string): Promise<CoreResponse>;
}

function callCore(core: CoreCalls, call: CoreCall, valid: ValidRequest): Promise<CoreResponse> {
  switch (valid.method) {
    case 'POST':
      return core.insert(call, valid.record);
    case 'GET':
      return core.read(call, valid.recordId);
    case 'LIST':
      return core.list(call, valid.query);
    case 'DELETE':
      return core.erase(call, valid.recordId);
  }
}

/**
 * What the broker does with one request: validate, then (only if valid) ask core, and
 * turn either outcome into a reply for the gateway. Never throws; never logs the token or
 * the body (nor a list's query: its cursor is core's, its times the client's).
 */
export function createPipeline(validator: RequestValidator, core: CoreCalls, metrics: BrokerMetrics, log: Logger) {
  return async (env: RequestEnvelope, deadline: number): Promise<ReplyEnvelope> => {
    const reply = (status: number, body: unknown): ReplyEnvelope => ({ v: PROTOCOL_VERSION, id: env.id, status, body });
    let valid;
    try {
      valid = validator.check(env);
    } catch (err) {
      if (!isNonstopError(err)) throw err;
      metrics.refused.inc({ code: err.code });
      metrics.processed.inc({ outcome: 'refused' });
      log.info('request refused', { requestId: env.id, code: err.code });
      return reply(err.status, errorBody(err.code, err.message));
    }
    const end = metrics.coreSeconds.startTimer({ method: valid.method });
    try {
      const call = { requestId: env.id, collection: valid.collection, token: valid.token, key: env.key, deadline };
      const res = await callCore(core, call, valid);
      metrics.processed.inc({ outcome: res.status < 400 ? 'ok' : 'core_refused' });
      return reply(res.status, res.body);
    } catch (err) {
      const status = isNonstopError(err) ? err.status : 502;
      const code = isNonstopError(err) ? err.code : ErrorCodes.unavailable.code;
      metrics.processed.inc({ outcome: 'core_failed' });
      log.warn('core call failed', { requestId: env.id, code });
      return reply(status, errorBody(code, isNonstopError(err) ? err.message : 'storage is unavailable'));
    } finally {
      end();
    }
  };
}
