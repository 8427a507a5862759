/**
 * Admission control for the gateway app: how many requests, and how many body bytes, it
 * holds at once. Each request it takes costs memory until it is answered — a 1 MiB body is
 * held about three and a half times over (the raw bytes, the decoded text, the queued
 * envelope) for as long as the request waits, up to its deadline while core is stalled.
 * nginx streams bodies through and passes up to 256 requests at once, 256 MiB of bodies;
 * before this, 200 pending 950 KB POSTs got the gateway OOM-killed. Past the limits a
 * request is refused at once, from its headers alone (Content-Length), before a byte of its
 * body is read: 503 `overloaded` with Retry-After. Known not stored: the client may retry.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { apiErrorBody } from '../../common/errors/api-error';
import { ErrorCodes } from '../../common/errors/codes';

export interface AdmissionLimits {
  /** Most requests taken in and not yet answered. */
  maxPendingRequests: number;
  /** Most body bytes (as declared) taken in and not yet answered. */
  maxPendingBytes: number;
}

export type AdmissionRefusal = 'requests' | 'bytes';

export type Admission = { admitted: true; release: () => void } | { admitted: false; refusal: AdmissionRefusal };

/**
 * Pure accounting: no timers, no I/O. A request is admitted only if both totals stay within
 * their limits with it counted; its release handle gives back exactly what it took, once.
 */
export class AdmissionControl {
  private requests = 0;
  private bytes = 0;

  constructor(private readonly limits: AdmissionLimits) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
  }

  tryAdmit(bytes: number): Admission {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`bytes must be a non-negative integer, got ${bytes}`);
    if (this.requests + 1 > this.limits.maxPendingRequests) return { admitted: false, refusal: 'requests' };
    if (this.bytes + bytes > this.limits.maxPendingBytes) return { admitted: false, refusal: 'bytes' };
    this.requests += 1;
    this.bytes += bytes;
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.requests -= 1;
        this.bytes -= bytes;
      },
    };
  }

  get pending(): { requests: number; bytes: number } {
    return { requests: this.requests, bytes: this.bytes };
  }
}

/**
 * Seconds a refused client is asked to wait. Requests leave within milliseconds while core
 * answers and at their deadline when it does not; a second spreads retries out without
 * leaving the gateway idle once they have gone.
 */
export const RETRY_AFTER_SECONDS = 1;

export interface AdmissionOptions {
  /** The most body the app will read: what a body of unknown length (chunked) is charged. */
  maxBodyBytes: number;
  /**
   * How long a request stays counted when its client leaves after the whole body arrived:
   * the app still holds the queued envelope until a reply or the request deadline.
   */
  holdAfterAbortMs: number;
}

/** The bytes a request is charged for, from its headers: never more than the app will read. */
export function chargedBytes(headers: { 'content-length'?: string; 'transfer-encoding'?: string }, maxBodyBytes: number): number {
  const declared = headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    return Number.isSafeInteger(n) && n >= 0 ? Math.min(n, maxBodyBytes) : maxBodyBytes;
  }
  return headers['transfer-encoding'] !== undefined ? maxBodyBytes : 0;
}

/**
 * The express middleware: runs before any body parser. A refusal is answered here, without
 * a log line (under overload there would be thousands; the request counter has them) and
 * without reading the body (Node discards what still arrives). An admitted request is
 * released when its response is finished, or when the connection closes first: at once if
 * the body never fully arrived (nothing was queued), else after `holdAfterAbortMs`.
 */
export function admissionMiddleware(control: AdmissionControl, opts: AdmissionOptions): RequestHandler {
  const { status } = ErrorCodes.overloaded;
  return (req, res, next) => {
    const admission = control.tryAdmit(chargedBytes(req.headers, opts.maxBodyBytes));
    if (!admission.admitted) {
      res.setHeader('retry-after', String(RETRY_AFTER_SECONDS));
      res.status(status).json(refusalBody(admission.refusal));
      return;
    }
    res.once('close', () => releaseOnClose(req, res, admission.release, opts.holdAfterAbortMs));
    next();
  };
}

/** The 503 body of a refusal; the caller sets Retry-After first. */
export function refusalBody(refusal: AdmissionRefusal): ReturnType<typeof apiErrorBody> {
  const what = refusal === 'bytes' ? 'request bodies' : 'requests';
  return apiErrorBody('overloaded', `the gateway holds too many pending ${what}; retry later`);
}

/**
 * When an admitted request's response closes: released at once if it was answered or its
 * body never fully arrived (nothing was queued), else after `holdAfterAbortMs`.
 */
export function releaseOnClose(req: IncomingMessage, res: ServerResponse, release: () => void, holdAfterAbortMs: number): void {
  if (res.writableFinished || !req.complete) release();
  else setTimeout(release, holdAfterAbortMs).unref();
}
