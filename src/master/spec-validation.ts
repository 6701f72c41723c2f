// Validation of submitted task specs at the master: what a user typed is normalized, then held to
// the rules every node applies (protocol/task-spec-rules), so a spec a node would refuse is refused
// at submit time with a message that names the field and the limit.
import { InvalidTaskError } from '../common/errors.js';
import { checkTaskSpec } from '../protocol/task-spec-rules.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';

/** Attempts a task may be given; not a node rule, so it lives here. */
export const MAX_ATTEMPTS = 100;

/** Throws InvalidTaskError naming the first problem of a spec; returns it with the image trimmed. */
export function validateTaskSpec(spec: TaskSpec | undefined): TaskSpec {
  if (!spec) throw new InvalidTaskError('the submit header has no spec');
  const normalized = { ...spec, image: spec.image.trim() };
  checkTaskSpec(normalized);
  return normalized;
}

/** 0 means the master default; anything else must be 1..MAX_ATTEMPTS. */
export function validateMaxAttempts(requested: number, masterDefault: number): number {
  if (requested === 0) return masterDefault;
  if (!Number.isInteger(requested) || requested < 1 || requested > MAX_ATTEMPTS) {
    throw new InvalidTaskError(`max_attempts must be between 1 and ${MAX_ATTEMPTS}, got ${requested}`);
  }
  return requested;
}
