// The order of task states and what a node's update may do to a task, as pure functions: the
// master's one answer to "may this node move this task from A to B?" (docs/protocol.md, "Task
// states and idempotent updates"). States only move forward; SUCCEEDED needs a stored result.
import { TaskState, taskStateToJSON } from '../protocol/gen/hivemind/v1/common.js';

/** Position of each state in QUEUED → ASSIGNED → ACCEPTED → PULLING → RUNNING → UPLOADING → terminal. */
const RANK: ReadonlyMap<TaskState, number> = new Map([
  [TaskState.TASK_STATE_QUEUED, 0],
  [TaskState.TASK_STATE_ASSIGNED, 1],
  [TaskState.TASK_STATE_ACCEPTED, 2],
  [TaskState.TASK_STATE_PULLING, 3],
  [TaskState.TASK_STATE_RUNNING, 4],
  [TaskState.TASK_STATE_UPLOADING, 5],
  [TaskState.TASK_STATE_SUCCEEDED, 6],
  [TaskState.TASK_STATE_FAILED, 6],
  [TaskState.TASK_STATE_CANCELLED, 6],
]);

/** The states a node reports while it works on a task; each may repeat (progress ticks) or move on. */
const NODE_LIVE_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.TASK_STATE_ACCEPTED,
  TaskState.TASK_STATE_PULLING,
  TaskState.TASK_STATE_RUNNING,
  TaskState.TASK_STATE_UPLOADING,
]);

export function stateName(s: TaskState): string {
  return taskStateToJSON(s).replace('TASK_STATE_', '');
}

/** The state's place in the lifecycle; undefined for states outside it (REJECTED, unknown values). */
export function stateRank(s: TaskState): number | undefined {
  return RANK.get(s);
}

function isTerminalState(s: TaskState): boolean {
  return stateRank(s) === 6;
}

export function isNodeLiveState(s: TaskState): boolean {
  return NODE_LIVE_STATES.has(s);
}

/**
 * What to do with a node's update (already known to be for the current attempt, with a new seq).
 * - apply: change the task.
 * - ignore: answer applied=false and change nothing (a late or backwards update: harmless, like
 *   a resend, so an honest worker that re-runs an attempt after a crash is not punished).
 * - refuse: fail the call with this status; the update breaks a rule no honest worker breaks.
 */
export type UpdateDecision =
  | { kind: 'apply' }
  | { kind: 'ignore'; reason: string }
  | { kind: 'refuse'; code: 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION'; reason: string };

export function decideNodeUpdate(current: TaskState, next: TaskState, resultStored: boolean): UpdateDecision {
  if (isTerminalState(current)) return { kind: 'ignore', reason: `the task is already ${stateName(current)}` };
  if (next === TaskState.TASK_STATE_REJECTED) {
    // A rejection answers an assignment; once the node accepted, it must fail or cancel instead.
    return current === TaskState.TASK_STATE_ASSIGNED
      ? { kind: 'apply' }
      : { kind: 'ignore', reason: `REJECTED answers an assignment, but the task is already ${stateName(current)}` };
  }
  if (isNodeLiveState(next)) {
    return stateRank(next)! >= stateRank(current)!
      ? { kind: 'apply' }
      : { kind: 'ignore', reason: `states only move forward: ${stateName(current)} → ${stateName(next)} is backwards` };
  }
  if (next === TaskState.TASK_STATE_SUCCEEDED) {
    return resultStored
      ? { kind: 'apply' }
      : { kind: 'refuse', code: 'FAILED_PRECONDITION', reason: 'SUCCEEDED means a verified result is stored, and none is: upload the result (UploadResult) before the terminal update' };
  }
  if (next === TaskState.TASK_STATE_FAILED || next === TaskState.TASK_STATE_CANCELLED) return { kind: 'apply' };
  return { kind: 'refuse', code: 'INVALID_ARGUMENT', reason: `a node cannot set task state ${stateName(next)}` };
}
