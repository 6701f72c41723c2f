// How the monitor answers a request that failed: the status, the body's message and the log level.
// A client's bad request (a path with "..", NUL or broken %-encoding, a bad query) is the client's
// problem: 400 or 404, a fixed message that echoes nothing back, and at most a debug log line, so
// a scanner cannot fill the worker's log with errors. Only the monitor's own failures are 500s.
import { HivemindError } from '../common/errors.js';

/** A request the monitor refuses with 400 and this message (written by the monitor, safe to echo). */
export class BadRequest extends HivemindError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

export interface RequestErrorAnswer {
  status: number;
  message: string;
  logLevel: 'debug' | 'error';
}

/**
 * Express, its router and serve-static reject hostile paths with http-errors carrying a 4xx
 * `status`: 403 for a path that climbs out of the served directory, 400 for NUL or a %-sequence
 * that does not decode. A 403 there means "no such file here", so it is a 404: the answer does not
 * tell a prober that something exists outside the served directory.
 */
export function answerRequestError(err: unknown): RequestErrorAnswer {
  if (err instanceof BadRequest) return { status: 400, message: err.message, logLevel: 'debug' };
  const e = err as { status?: unknown; statusCode?: unknown } | null;
  const raw = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  if (raw !== undefined && Number.isInteger(raw) && raw >= 400 && raw < 500) {
    if (raw === 403 || raw === 404) return { status: 404, message: 'not found', logLevel: 'debug' };
    return { status: 400, message: 'bad request', logLevel: 'debug' };
  }
  return { status: 500, message: 'internal error in the monitor (see the worker log)', logLevel: 'error' };
}
