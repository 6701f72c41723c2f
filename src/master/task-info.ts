// Conversion of stored task rows into the TaskInfo messages of the admin API.
import type { TaskEvent, TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import type { TaskEventRow, TaskRow } from './master-store.js';

export function toTaskInfo(t: TaskRow, events: readonly TaskEventRow[] = []): TaskInfo {
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
  };
}
