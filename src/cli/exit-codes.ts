// Process exit codes of the `hivemind` CLI, documented in the README.
import { OutcomeKind, TaskState } from '../protocol/gen/hivemind/v1/common.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_CONFIG = 2;
export const EXIT_TIMED_OUT = 124;
export const EXIT_CANCELLED = 130;
export const EXIT_OOM = 137;

/**
 * `hivemind wait` exit code for a finished task: 0 on success; the task's own exit code when it
 * exited non-zero (clamped to 1..123); 124 timed out; 137 OOM-killed; 130 cancelled; 1 otherwise.
 */
export function exitCodeForTask(state: TaskState, outcome?: { kind: OutcomeKind; exitCode: number }): number {
  if (state === TaskState.TASK_STATE_SUCCEEDED) return EXIT_OK;
  if (state === TaskState.TASK_STATE_CANCELLED) return EXIT_CANCELLED;
  switch (outcome?.kind) {
    case OutcomeKind.OUTCOME_KIND_EXITED:
      return outcome.exitCode > 0 ? Math.min(outcome.exitCode, 123) : EXIT_FAILURE;
    case OutcomeKind.OUTCOME_KIND_TIMED_OUT:
      return EXIT_TIMED_OUT;
    case OutcomeKind.OUTCOME_KIND_OOM_KILLED:
      return EXIT_OOM;
    case OutcomeKind.OUTCOME_KIND_CANCELLED:
    case OutcomeKind.OUTCOME_KIND_SHUTDOWN:
      return EXIT_CANCELLED;
    default:
      return EXIT_FAILURE;
  }
}
