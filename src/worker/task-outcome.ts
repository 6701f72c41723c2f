// Pure mapping from what happened to a task to the terminal state and outcome the master
// records, shared by the live task loop and the recovery of tasks interrupted by a crash.
import { OutcomeKind, TaskState, type TaskOutcome } from '../protocol/gen/hivemind/v1/common.js';
import { ResultTooLargeError } from '../common/errors.js';
import { hivemindCodeOf } from '../protocol/grpc-errors.js';
import { abortOutcomeKind, asAbortReason } from './contracts.js';

/** SUCCEEDED only for a clean exit whose result the master holds; cancellations stay CANCELLED. */
export function terminalState(outcome: TaskOutcome, resultUploaded: boolean): TaskState {
  if (outcome.kind === OutcomeKind.OUTCOME_KIND_CANCELLED || outcome.kind === OutcomeKind.OUTCOME_KIND_SHUTDOWN) {
    return TaskState.TASK_STATE_CANCELLED;
  }
  if (outcome.kind === OutcomeKind.OUTCOME_KIND_EXITED && outcome.exitCode === 0 && resultUploaded) return TaskState.TASK_STATE_SUCCEEDED;
  return TaskState.TASK_STATE_FAILED;
}

/** A human message for the terminal update; explains the surprising cases. */
export function terminalMessage(outcome: TaskOutcome, resultUploaded: boolean): string {
  if (outcome.kind === OutcomeKind.OUTCOME_KIND_EXITED && outcome.exitCode === 0 && !resultUploaded) {
    return outcome.message || 'the task exited 0 but no result archive was produced';
  }
  return outcome.message;
}

/** The outcome of a task stopped by its AbortSignal outside the executor (download, upload). */
export function abortOutcome(reason: unknown, base?: Partial<TaskOutcome>): TaskOutcome {
  const r = asAbortReason(reason);
  const message =
    r === 'shutdown'
      ? 'the node shut down past its drain timeout'
      : r === 'superseded'
        ? 'stopped: the master moved this task to a newer attempt'
        : 'cancelled';
  return {
    kind: abortOutcomeKind(r),
    exitCode: base?.exitCode ?? 0,
    message: base?.message || message,
    durationMs: base?.durationMs ?? 0,
    resultSize: 0,
    resultSha256: '',
  };
}

export function failureOutcome(kind: OutcomeKind, message: string, durationMs = 0): TaskOutcome {
  return { kind, exitCode: 0, message, durationMs, resultSize: 0, resultSha256: '' };
}

/** The master refused the result for its size: final, and the task's output is what is wrong. */
export function isResultRefusal(err: unknown): boolean {
  return hivemindCodeOf(err) === ResultTooLargeError.CODE;
}
