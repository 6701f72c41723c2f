// Typed errors with stable codes and messages a user can act on.
// `code` is stable across versions and safe to match on; `message` is for humans.

export class HivemindError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad configuration, flags or environment: the CLI exits with code 2. */
export class ConfigError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
  }
}

/** A task spec that can never run (bad limits, empty image, reserved env names...). */
export class InvalidTaskError extends HivemindError {
  constructor(message: string) {
    super('TASK_INVALID', message);
  }
}

/** An archive that is unsafe (path escape, links, devices) or over its caps. */
export class UnsafeArchiveError extends HivemindError {
  constructor(message: string) {
    super('ARCHIVE_UNSAFE', message);
  }
}

/** An archive over a size or entry cap: a caller may offer a way to raise the cap. */
export class ArchiveCapError extends UnsafeArchiveError {
  override readonly code = 'ARCHIVE_OVER_CAP';
  constructor(
    message: string,
    /** Which cap was passed. */
    readonly limit: 'bytes' | 'entries',
    /** The cap's value (bytes or entries). */
    readonly cap: number,
    /** The entry being read when it was passed. */
    readonly entry: string,
  ) {
    super(message);
  }
}

/**
 * A result upload past its declared size or the task's output cap (the master refuses it while
 * streaming and keeps none of it). Final: the same archive is refused again, so the node fails
 * the task with OUTPUT_REJECTED instead of retrying.
 */
export class ResultTooLargeError extends HivemindError {
  static readonly CODE = 'RESULT_TOO_LARGE';
  constructor(message: string) {
    super(ResultTooLargeError.CODE, message);
  }
}

/** The master's operator removed this node (`hivemind nodes remove`): it must stop, not retry. */
export class NodeRemovedError extends HivemindError {
  constructor(message: string) {
    super('NODE_REMOVED', message);
  }
}

/** Authentication failure: missing, wrong or expired credential/token. */
export class AuthError extends HivemindError {
  constructor(message: string) {
    super('AUTH_FAILED', message);
  }
}

export class NotFoundError extends HivemindError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** The container engine is unreachable or refused a request. */
export class EngineError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ENGINE_ERROR', message, options);
  }
}

/** The engine's socket refused, reset or closed the connection: the daemon is down or restarting. */
export class EngineUnreachableError extends EngineError {}

/** The node was asked to allow egress but cannot put its egress network or firewall in place. */
export class EgressUnavailableError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EGRESS_UNAVAILABLE', `egress cannot be offered: ${message}`, options);
  }
}

/** The engine refused to remove an image because a container (running or not) still uses it. */
export class ImageInUseError extends EngineError {
  override readonly code = 'IMAGE_IN_USE';
}

/** An operation stopped because its AbortSignal fired. */
export class AbortedError extends HivemindError {
  constructor(message = 'operation aborted', options?: { cause?: unknown }) {
    super('ABORTED', message, options);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A service replica's port cannot be reached: not running on this node, not started, or not listening. */
/** An exec session that cannot start or go on (refused, bounds, no running container): exit 126 with this message. */
export class ExecRefusedError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EXEC_REFUSED', message, options);
  }
}

export class ReplicaUnreachableError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REPLICA_UNREACHABLE', message, options);
  }
}
