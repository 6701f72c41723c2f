// What the monitor knows about the tasks running right now, kept current from the worker's
// events (state changes, data fetch, pull and upload progress, per-task usage in each report) instead of
// asking the worker or the database on every push.
import { TaskState, type ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskUpdate } from '../protocol/gen/hivemind/v1/node.js';
import type { TaskDataProgressEvent, TaskProgressEvent, TaskRecord } from '../worker/contracts.js';
import type { LiveTaskState, RunningTaskView } from './monitor-types.js';
import { limitsView, taskProgressView } from './monitor-view.js';

const LIVE: ReadonlyMap<TaskState, LiveTaskState> = new Map([
  [TaskState.TASK_STATE_ACCEPTED, 'accepted'],
  [TaskState.TASK_STATE_PULLING, 'pulling'],
  [TaskState.TASK_STATE_RUNNING, 'running'],
  [TaskState.TASK_STATE_UPLOADING, 'uploading'],
]);

const key = (taskId: string, attempt: number) => `${taskId}#${attempt}`;

export class LiveTasks {
  private readonly tasks = new Map<string, RunningTaskView>();

  /** `lookup` reads a task's record (spec, times) the first time it shows up. */
  constructor(private readonly lookup: (taskId: string, attempt: number) => TaskRecord | undefined) {}

  /** Starts from the tasks the worker is running (the monitor may start after them). */
  seed(running: { taskId: string; attempt: number }[], startedAt: (taskId: string, attempt: number) => number | undefined): void {
    for (const t of running) {
      const rec = this.lookup(t.taskId, t.attempt);
      const state = rec ? LIVE.get(rec.state) : undefined;
      if (!rec || !state) continue;
      const view = this.fromRecord(rec, state);
      view.startedAtMs = startedAt(t.taskId, t.attempt) ?? null;
      this.tasks.set(key(t.taskId, t.attempt), view);
    }
  }

  /** Applies a state change; returns true when the running set or a task's state changed. */
  onUpdate(u: TaskUpdate): boolean {
    const k = key(u.taskId, u.attempt);
    const state = LIVE.get(u.state);
    if (!state) return this.tasks.delete(k);
    let view = this.tasks.get(k);
    let changed = false;
    if (!view) {
      const rec = this.lookup(u.taskId, u.attempt);
      if (!rec) return false;
      view = this.fromRecord(rec, state);
      this.tasks.set(k, view);
      changed = true;
    }
    changed ||= view.state !== state;
    view.state = state;
    if (state === 'running' && view.startedAtMs === null) view.startedAtMs = u.atMs;
    if (state === 'pulling' && u.pull) view.pull = { currentBytes: u.pull.currentBytes, totalBytes: u.pull.totalBytes };
    // Data sets come in while the task is accepted; once it pulls or runs they are all there.
    if (state === 'accepted' && u.data) view.data = { currentBytes: u.data.receivedBytes, totalBytes: u.data.totalBytes };
    if (state !== 'accepted') view.data = null;
    if (state === 'running' || state === 'uploading') view.pull = null;
    if (state === 'running' && u.progress) {
      view.progress = taskProgressView(u.progress);
      changed = true;
    }
    return changed;
  }

  onProgress(p: TaskProgressEvent): boolean {
    const view = this.tasks.get(key(p.taskId, p.attempt));
    if (!view) return false;
    view[p.kind] = { currentBytes: p.currentBytes, totalBytes: p.totalBytes };
    return true;
  }

  /** The task's data sets coming into the cache: shown while it is still accepted. */
  onDataProgress(p: TaskDataProgressEvent): boolean {
    const view = this.tasks.get(key(p.taskId, p.attempt));
    if (!view || view.state !== 'accepted') return false;
    view.data = { currentBytes: p.receivedBytes, totalBytes: p.totalBytes };
    return true;
  }

  onReport(r: ResourceReport): void {
    const usage = new Map(r.tasks.map((u) => [u.taskId, u]));
    for (const view of this.tasks.values()) {
      const u = usage.get(view.taskId);
      view.usage = u ? { cpuPercent: u.cpuPercent, memoryBytes: u.memoryBytes } : view.state === 'running' ? view.usage : null;
    }
  }

  has(taskId: string): boolean {
    for (const v of this.tasks.values()) if (v.taskId === taskId) return true;
    return false;
  }

  list(): RunningTaskView[] {
    return [...this.tasks.values()].sort((a, b) => a.acceptedAtMs - b.acceptedAtMs).map((v) => structuredClone(v));
  }

  private fromRecord(rec: TaskRecord, state: LiveTaskState): RunningTaskView {
    return {
      taskId: rec.taskId,
      attempt: rec.attempt,
      image: rec.assignment.spec?.image ?? '',
      command: rec.assignment.spec?.command ?? [],
      limits: limitsView(rec.assignment.spec),
      state,
      acceptedAtMs: rec.createdAt,
      startedAtMs: null,
      usage: null,
      pull: null,
      upload: null,
      data: null,
      progress: state === 'running' ? taskProgressView(rec.progress) : null,
    };
  }
}
