// The set of task attempts running on this node: what they hold, abort by id, cancel all and
// the drain wait. Each task leaves the set when its run ends.
import { sleep } from '../common/sleep.js';
import type { Logger } from '../common/logger.js';
import type { AbortReason } from './contracts.js';
import type { Reservation } from './fit.js';
import { taskKey } from './running-task.js';

/** What the set needs of a running task. */
export interface TrackedTask {
  readonly taskId: string;
  readonly attempt: number;
  readonly key: string;
  readonly reservation: Reservation | undefined;
  readonly aborted: boolean;
  abort(reason: AbortReason): void;
  done: Promise<void>;
}

export class ActiveTasks<T extends TrackedTask = TrackedTask> {
  private readonly tasks = new Map<string, T>();

  constructor(private readonly logger: Logger) {}

  get size(): number {
    return this.tasks.size;
  }

  has(taskId: string, attempt: number): boolean {
    return this.tasks.has(taskKey(taskId, attempt));
  }

  get(taskId: string, attempt: number): T | undefined {
    return this.tasks.get(taskKey(taskId, attempt));
  }

  list(): T[] {
    return [...this.tasks.values()];
  }

  add(task: T): void {
    this.tasks.set(task.key, task);
  }

  /** Tracks a task's run: `done` settles with it, and the task leaves the set then. */
  track(task: T, run: Promise<void>): void {
    task.done = run.finally(() => this.tasks.delete(task.key));
  }

  /** What the running tasks hold (a task whose container is gone holds nothing). */
  reservations(): Reservation[] {
    return this.list().flatMap((t) => (t.reservation ? [t.reservation] : []));
  }

  /** Whether an attempt of the task runs here and is not being stopped already. */
  isRunning(taskId: string): boolean {
    return this.list().some((t) => t.taskId === taskId && !t.aborted);
  }

  /** Aborts the task's attempt (0 = any attempt: a user cancel does not know attempts). */
  abort(taskId: string, attempt: number, reason: AbortReason): void {
    for (const t of this.tasks.values()) {
      if (t.taskId === taskId && (attempt === 0 || t.attempt === attempt) && !t.aborted) {
        this.logger.info({ taskId, attempt: t.attempt, reason }, 'aborting task');
        t.abort(reason);
      }
    }
  }

  cancelAll(reason: AbortReason): void {
    for (const t of this.tasks.values()) t.abort(reason);
  }

  /** Waits for the running tasks up to `timeoutMs`, then aborts the rest with 'shutdown' and waits for them. */
  async drain(timeoutMs: number): Promise<void> {
    const tasks = this.list();
    if (tasks.length === 0) return;
    this.logger.info({ tasks: tasks.length, timeoutMs }, 'waiting for running tasks');
    const timeout = new AbortController();
    const finished = await Promise.race([
      Promise.all(tasks.map((t) => t.done)).then(() => true),
      sleep(timeoutMs, timeout.signal).then(() => false),
    ]).finally(() => timeout.abort());
    if (finished) return;
    const left = this.list();
    this.logger.warn({ tasks: left.length }, 'drain timeout reached; cancelling the remaining tasks');
    for (const t of left) t.abort('shutdown');
    await Promise.all(left.map((t) => t.done));
  }
}
