// The service reconciler's decision, as a pure function: a service (wanted count, removing) and
// its replica tasks in; which indexes get a new task now, which tasks to cancel, which indexes
// wait out a replacement backoff, and whether the service row can go, out.
import { TaskState } from '../protocol/gen/hivemind/v1/common.js';
import { isTerminal } from './store-rows.js';

/** A replica task as the plan reads it. */
export interface ReplicaTaskView {
  id: string;
  index: number;
  state: TaskState;
  cancelRequested: boolean;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

/** Per index: how many replacements in a row ended on their own, and until when the next waits. */
export interface IndexBackoff {
  failures: number;
  /** The ended task these failures were counted up to (each ended task counts once). */
  countedTaskId: string;
  notBefore: number;
}

export interface ReplicaPlan {
  create: number[];
  cancel: { taskId: string; reason: string }[];
  /** Indexes waiting for their backoff to pass: when the reconciler should look again. */
  waiting: { index: number; at: number }[];
  backoff: Map<number, IndexBackoff>;
  /** Removing, and no replica task is live any more: the service row can be deleted. */
  gone: boolean;
}

export const FIRST_REPLACEMENT_DELAY_MS = 1_000;
export const MAX_REPLACEMENT_DELAY_MS = 60_000;
/** A replica that ran this long before it ended starts its backoff over: it was not crash-looping. */
export const STABLE_RUN_MS = 60_000;

/** 1 s after the first failure in a row, doubling to 60 s. */
export function replacementDelayMs(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(MAX_REPLACEMENT_DELAY_MS, FIRST_REPLACEMENT_DELAY_MS * 2 ** Math.min(failures - 1, 16));
}

/**
 * `tasks` holds every live replica task of the service and at least the latest ended one of each
 * index. A live task is one not terminal; one being cancelled (cancel requested) still runs but no
 * longer counts as the index's replica, so a scale back up does not wait for it to stop.
 */
export function planReplicas(
  svc: { replicas: number; removing: boolean },
  tasks: readonly ReplicaTaskView[],
  backoff: ReadonlyMap<number, IndexBackoff>,
  now: number,
): ReplicaPlan {
  const plan: ReplicaPlan = { create: [], cancel: [], waiting: [], backoff: new Map(), gone: false };
  const live = tasks.filter((t) => !isTerminal(t.state));
  if (svc.removing) {
    for (const t of live) if (!t.cancelRequested) plan.cancel.push({ taskId: t.id, reason: 'the service is being removed' });
    plan.gone = live.length === 0;
    return plan;
  }
  for (const t of live) {
    if (t.index >= svc.replicas && !t.cancelRequested) plan.cancel.push({ taskId: t.id, reason: `the service was scaled to ${svc.replicas} replicas` });
  }
  for (let index = 0; index < svc.replicas; index++) {
    const serving = live.filter((t) => t.index === index && !t.cancelRequested).sort((a, b) => a.createdAt - b.createdAt);
    for (const extra of serving.slice(1)) plan.cancel.push({ taskId: extra.id, reason: `replica ${index} has another task (${serving[0]!.id})` });
    const before = backoff.get(index);
    if (serving.length > 0) {
      if (before) plan.backoff.set(index, before);
      continue;
    }
    const ended = tasks.filter((t) => t.index === index && isTerminal(t.state)).sort((a, b) => b.createdAt - a.createdAt)[0];
    // Never run, scaled down and up, or cancelled by a user: a new task at once.
    if (!ended || ended.state === TaskState.TASK_STATE_CANCELLED) {
      plan.create.push(index);
      continue;
    }
    let b = before;
    if (!b || b.countedTaskId !== ended.id) {
      const ranLong = ended.startedAt !== null && (ended.finishedAt ?? now) - ended.startedAt >= STABLE_RUN_MS;
      const failures = (ranLong ? 0 : (b?.failures ?? 0)) + 1;
      b = { failures, countedTaskId: ended.id, notBefore: (ended.finishedAt ?? now) + replacementDelayMs(failures) };
    }
    plan.backoff.set(index, b);
    if (now >= b.notBefore) plan.create.push(index);
    else plan.waiting.push({ index, at: b.notBefore });
  }
  return plan;
}
