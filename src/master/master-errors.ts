// Typed errors of the master's services; their codes map to gRPC statuses in grpc-errors.ts.
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
