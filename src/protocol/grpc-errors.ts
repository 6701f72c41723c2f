// Mapping between our typed errors and gRPC status codes, and the one place that decides
// which gRPC failures are worth retrying.
import { status, type ServiceError, Metadata } from '@grpc/grpc-js';
import { cutMessage } from '../common/echo-value.js';
import { HivemindError, errorMessage } from '../common/errors.js';

const CODE_TO_STATUS: Record<string, status> = {
  AUTH_FAILED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  NODE_REMOVED: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  TASK_INVALID: status.INVALID_ARGUMENT,
  ARCHIVE_UNSAFE: status.INVALID_ARGUMENT,
  CONFIG_INVALID: status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  // Over a size limit the caller chose or was given: final, so not RESOURCE_EXHAUSTED (retried).
  RESULT_TOO_LARGE: status.INVALID_ARGUMENT,
  // A data set's bytes that do not hash to the declared digest (x-hivemind-error says which).
  DATA_DIGEST_MISMATCH: status.INVALID_ARGUMENT,
  ABORTED: status.CANCELLED,
};

/**
 * Longest error message sent to a caller. The status details travel in trailing metadata, which
 * clients cap (grpc-js: 8 KiB for all of it); messages echo values through echoValue, and this
 * cut catches any that does not.
 */
export const MAX_ERROR_DETAILS_CHARS = 1024;

/** Turns any thrown value into a ServiceError for a gRPC handler's callback/emit. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const code = err instanceof HivemindError ? (CODE_TO_STATUS[err.code] ?? status.INTERNAL) : status.INTERNAL;
  const md = new Metadata();
  if (err instanceof HivemindError) md.set('x-hivemind-error', err.code);
  const details = cutMessage(errorMessage(err), MAX_ERROR_DETAILS_CHARS);
  return { code, details, message: details, metadata: md };
}

/** Our stable error code carried in a gRPC error's metadata (x-hivemind-error), if any. */
export function hivemindCodeOf(err: unknown): string | undefined {
  const md = (err as { metadata?: unknown } | null)?.metadata;
  if (!(md instanceof Metadata)) return undefined;
  const v = md.get('x-hivemind-error')[0];
  return typeof v === 'string' ? v : undefined;
}

/**
 * A call the node did not make because it has no live session to the master: it carries the
 * status the master's own absence gives (UNAVAILABLE), so it is retried the same way.
 */
export class NotConnectedError extends HivemindError {
  readonly grpcStatus = status.UNAVAILABLE;
  constructor(message = 'not connected to the master') {
    super('MASTER_NOT_CONNECTED', message);
  }
}

export function grpcStatusOf(err: unknown): status | undefined {
  if (err instanceof NotConnectedError) return err.grpcStatus;
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? (c as status) : undefined;
}

/**
 * Whether a failed call may succeed if tried again later: the master was unreachable,
 * restarting or overloaded. Auth, validation and not-found failures are final.
 */
export function isRetryable(err: unknown): boolean {
  switch (grpcStatusOf(err)) {
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.RESOURCE_EXHAUSTED:
    case status.ABORTED:
    case status.INTERNAL:
    case status.UNKNOWN:
    case status.CANCELLED:
      return true;
    default:
      return false;
  }
}

/** A readable one-line message from a gRPC error (details without the "14 UNAVAILABLE:" prefix). */
export function describeGrpcError(err: unknown): string {
  const e = err as Partial<ServiceError> | null;
  if (e && typeof e.details === 'string' && e.details) return e.details;
  return errorMessage(err);
}
