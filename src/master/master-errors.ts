// Typed errors of the master's services; their codes map to gRPC statuses in grpc-errors.ts.
import { parseHostPort, unmapIPv4 } from '../common/address.js';
import { HivemindError } from '../common/errors.js';

/** The request is well-formed but the task is not in a state that allows it. */
export class PreconditionError extends HivemindError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', message);
  }
}

/** A malformed request (wrong message order, bad offset, ...). */
export class InvalidArgumentError extends HivemindError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** The thing to create exists already (a service of that name). */
export class AlreadyExistsError extends HivemindError {
  constructor(message: string) {
    super('ALREADY_EXISTS', message);
  }
}

/** An authenticated caller doing what it may not (e.g. a credential used from the wrong address). */
export class PermissionDeniedError extends HivemindError {
  constructor(message: string) {
    super('PERMISSION_DENIED', message);
  }
}

/** The IP of a gRPC peer string ("1.2.3.4:5678", "[::ffff:1.2.3.4]:5678", "ipv4:…"). */
export function peerIp(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  return unmapIPv4(parseHostPort(p)?.host ?? p);
}

/** A bounded resource is in use up to its limit (e.g. concurrent downloads); retry later. */
export class ResourceExhaustedError extends HivemindError {
  constructor(message: string) {
    super('RESOURCE_EXHAUSTED', message);
  }
}
