// The service reconciler's decision, as a pure function: a service (wanted count, removing) and
// its replica tasks in; which indexes get a new task now, which tasks to cancel, which indexes
// wait out a replacement backoff, which replicas are handed over from a node that stopped
// accepting tasks (paused or draining), and whether the service row can go, out.
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
  /** The node it is assigned to; null while queued. */
  nodeId: string | null;
  /** RUNNING with its latest ReplicaStatus healthy: the gateway may route to it. */
  healthy: boolean;
  /** Nodes it must not go to; a handover surge excludes the node it takes over from. */
  excludedNodes: readonly string[];
}

/**
 * What the reconciler remembers of a handover, per old (handed over) task id. Surges are
 * recognised from the tasks themselves (same index, excluding the old task's node), so a master
 * restart finds them again; this only tells a surge that vanished from one never made.
 */
export interface HandoverMemo {
  /** A surge was made for the old task and has not been accounted for yet. */
  surgeOut: boolean;
  /** No new surge before this time (the last one was given up or ended on its own). */
  retryAt: number;
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
  /** Handover surges to create: a second task of `index`, kept off `avoidNode`, taking over `replaces`. */
  surge: { index: number; replaces: string; avoidNode: string }[];
  cancel: { taskId: string; reason: string }[];
  /** Indexes waiting for their backoff to pass: when the reconciler should look again. */
  waiting: { index: number; at: number }[];
  backoff: Map<number, IndexBackoff>;
  /** Memos of the handovers under way (only those of old tasks still on a leaving node). */
  handovers: Map<string, HandoverMemo>;
  /** Removing, and no replica task is live any more: the service row can be deleted. */
  gone: boolean;
}

export const FIRST_REPLACEMENT_DELAY_MS = 1_000;
export const MAX_REPLACEMENT_DELAY_MS = 60_000;
/** A replica that ran this long before it ended starts its backoff over: it was not crash-looping. */
export const STABLE_RUN_MS = 60_000;

/** A surge still queued this long after it was made found no node: the handover is given up. */
export const HANDOVER_PLACE_MS = 10_000;
/** A placed surge not healthy this long after it was made (image pull included): given up too. */
export const HANDOVER_HEALTHY_MS = 5 * 60_000;
/** After a handover was given up (or its surge ended on its own), the next try waits this long. */
export const HANDOVER_RETRY_MS = 60_000;

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
  handover: { leaving: (nodeId: string) => boolean; memos: ReadonlyMap<string, HandoverMemo> } = { leaving: () => false, memos: new Map() },
): ReplicaPlan {
  const plan: ReplicaPlan = { create: [], surge: [], cancel: [], waiting: [], backoff: new Map(), handovers: new Map(), gone: false };
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
    const old = serving[0];
    const surge = old?.nodeId ? serving.slice(1).find((t) => t.excludedNodes.includes(old.nodeId!)) : undefined;
    for (const extra of serving.slice(1)) {
      if (extra !== surge) plan.cancel.push({ taskId: extra.id, reason: `replica ${index} has another task (${old!.id})` });
    }
    if (old?.nodeId) planHandover(plan, index, old, old.nodeId, surge, handover, now);
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

/**
 * The handover of replica `index` from `old`, whose node is `nodeId`. While that node is leaving
 * (online, not accepting: paused or draining) a surge task of the same index is made, kept off the
 * node; once the surge is healthy the old task is cancelled (it stops within its grace), so the
 * gateway always has a healthy replica when capacity allows. A surge that finds no node within
 * HANDOVER_PLACE_MS (or is not healthy within HANDOVER_HEALTHY_MS) is cancelled and the old task
 * keeps running: a paused node runs what it has, and a draining node stops it at its own
 * deadline (the worker's handover wait). If the node accepts again, the surge is called off.
 */
function planHandover(
  plan: ReplicaPlan,
  index: number,
  old: ReplicaTaskView,
  nodeId: string,
  surge: ReplicaTaskView | undefined,
  handover: { leaving: (nodeId: string) => boolean; memos: ReadonlyMap<string, HandoverMemo> },
  now: number,
): void {
  if (!handover.leaving(nodeId)) {
    if (surge) plan.cancel.push({ taskId: surge.id, reason: `the node of replica ${index} (task ${old.id}) accepts tasks again: its handover is called off` });
    return;
  }
  const memo: HandoverMemo = { ...(handover.memos.get(old.id) ?? { surgeOut: false, retryAt: 0 }) };
  if (surge) {
    memo.surgeOut = true;
    if (surge.healthy) {
      plan.cancel.push({ taskId: old.id, reason: `its node stopped accepting tasks: replica ${index} was handed over to task ${surge.id}` });
      return;
    }
    const queued = surge.state === TaskState.TASK_STATE_QUEUED;
    const limit = queued ? HANDOVER_PLACE_MS : HANDOVER_HEALTHY_MS;
    if (now - surge.createdAt >= limit) {
      plan.cancel.push({
        taskId: surge.id,
        reason: queued
          ? `no other node could take replica ${index} within ${HANDOVER_PLACE_MS / 1000} s: the handover is given up, task ${old.id} keeps running`
          : `the surge of replica ${index} was not healthy within ${HANDOVER_HEALTHY_MS / 1000} s: the handover is given up, task ${old.id} keeps running`,
      });
      memo.surgeOut = false;
      memo.retryAt = now + HANDOVER_RETRY_MS;
    } else {
      plan.waiting.push({ index, at: surge.createdAt + limit });
    }
  } else {
    // Made earlier and gone without this plan cancelling it: it failed or a user cancelled it.
    if (memo.surgeOut) {
      memo.surgeOut = false;
      memo.retryAt = now + HANDOVER_RETRY_MS;
    }
    if (now >= memo.retryAt) {
      plan.surge.push({ index, replaces: old.id, avoidNode: nodeId });
      memo.surgeOut = true;
    } else {
      plan.waiting.push({ index, at: memo.retryAt });
    }
  }
  plan.handovers.set(old.id, memo);
}
