// Conversion of stored task rows into the TaskInfo messages of the admin API, kept under a size
// that fits a gRPC message however long the task's history.
import { TaskEvent, TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { summarise } from './admin-listing.js';
import type { TaskEventRow, TaskRow } from './master-store.js';
import type { DataProgress } from '../protocol/gen/hivemind/v1/common.js';

/** `dataProgress`: the node's latest word on fetching the task's data sets (only while ACCEPTED). */
export function toTaskInfo(t: TaskRow, events: readonly TaskEventRow[] = [], dataProgress?: DataProgress): TaskInfo {
  return {
    taskId: t.id,
    spec: t.spec,
    state: t.state,
    attempt: t.attempt,
    maxAttempts: t.maxAttempts,
    nodeId: t.nodeId ?? '',
    queueReason: t.queueReason,
    outcome: t.outcome,
    createdAtMs: t.createdAt,
    updatedAtMs: t.updatedAt,
    startedAtMs: t.startedAt ?? 0,
    finishedAtMs: t.finishedAt ?? 0,
    inputSize: t.inputSize,
    cancelRequested: t.cancelRequested,
    events: events.map((e): TaskEvent => ({ state: e.state, atMs: e.at, nodeId: e.nodeId ?? '', attempt: e.attempt, message: e.message })),
    truncated: false,
    dataProgress,
    replica: t.replicaStatus,
    progress: t.progress,
  };
}

/**
 * `info` if it encodes to at most `maxBytes`; otherwise with its oldest events left out (the
 * newest tell what is happening now) and, should that not do, its spec and events summarised.
 * Flagged as truncated when anything was cut.
 */
export function fitTaskInfo(info: TaskInfo, maxBytes: number): TaskInfo {
  const size = (i: TaskInfo) => TaskInfo.encode(i).finish().length;
  if (size(info) <= maxBytes) return info;
  let budget = maxBytes - size({ ...info, events: [] });
  if (budget < 0) return { ...summarise({ ...info, events: info.events.slice(-32) }).value, truncated: true };
  let first = info.events.length;
  while (first > 0) {
    // An event's share of the message: its own bytes plus tag and length prefix.
    const bytes = TaskEvent.encode(info.events[first - 1]!).finish().length + 6;
    if (bytes > budget) break;
    budget -= bytes;
    first--;
  }
  return { ...info, events: info.events.slice(first), truncated: true };
}
