/**
 * A total deadline for receiving a request body. nginx's client_body_timeout bounds only
 * the gap between two reads, so a client that sends a few bytes every few seconds never
 * trips it, and a body streamed to the app (nginx/config.ts) keeps its admission share for
 * as long as it trickles: eight clients announcing 1 MiB each fill MAX_PENDING_BYTES, and
 * every other write was refused 503 overloaded for as long as they kept sending (Node's own
 * requestTimeout would have ended them after five minutes). With this, a body not whole
 * `timeoutMs` after its headers is answered 408 request_timeout (stored "no": nothing was
 * queued) and its connection closed, which gives its admission share back at once and makes
 * nginx close the client's connection. test/security/slow-bodies.test.ts has the attack.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { apiErrorBody } from '../../common/errors/api-error';
import { ErrorCodes } from '../../common/errors/codes';
import { sendJson } from './lean-route';

/**
 * The middleware: runs after admission, before the body is read. The timer stops when the
 * response is done.
 */
export function bodyDeadlineMiddleware(timeoutMs: number): RequestHandler {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`timeoutMs must be a positive integer, got ${timeoutMs}`);
  const message = bodyTimeoutMessage(timeoutMs);
  return (req, res, next) => {
    const timer = setTimeout(() => answerBodyTimeout(req, res, message), timeoutMs);
    res.once('close', () => clearTimeout(timer));
    next();
  };
}

export function bodyTimeoutMessage(timeoutMs: number): string {
  return `the request body did not arrive within ${timeoutMs / 1000} s`;
}

/**
 * When the deadline passes: a request whose body is complete (waiting for its reply) is
 * left alone, the pipeline's own deadline governs it.
 */
export function answerBodyTimeout(req: IncomingMessage, res: ServerResponse, message: string): void {
  if (req.complete) return;
  // Closing the connection is what ends the trickle: a kept-alive one would go on
  // reading the rest of the body to discard it. The body reader then fails on the
  // closed socket, after this answer.
  if (res.headersSent) return void req.socket.destroy();
  res.setHeader('connection', 'close');
  sendJson(res, ErrorCodes.requestTimeout.status, apiErrorBody('requestTimeout', message));
}
