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

  /**
   * Waits for the running tasks up to `timeoutMs`, then aborts the rest with 'shutdown' and waits
   * for them. Tasks `linger` picks (service replicas: they never end by themselves, the master
   * hands them over by cancelling them) are waited for only until `linger.waitMs` from now has
   * passed and no other task is left; then `linger.beforeStop` runs and they are aborted with
   * 'shutdown' as well.
   */
  async drain(timeoutMs: number, linger?: DrainLinger<T>): Promise<void> {
    const tasks = this.list();
    if (tasks.length === 0) return;
    const lingering = linger ? tasks.filter((t) => linger.picks(t)) : [];
    const others = tasks.filter((t) => !lingering.includes(t));
    this.logger.info({ tasks: others.length, replicas: lingering.length, timeoutMs, handoverWaitMs: linger?.waitMs }, 'waiting for running tasks');
    const timers = new AbortController();
    // Both resolve false when their time is up (and when the drain is over: nobody waits then).
    const until = (ms: number) => sleep(ms, timers.signal).then(() => false, () => false);
    const allDone = (ts: T[]) => Promise.all(ts.map((t) => t.done)).then(() => true);
    try {
      const deadline = until(timeoutMs);
      const handoverOver = until(Math.min(linger?.waitMs ?? 0, timeoutMs));
      const othersDone = await Promise.race([allDone(others), deadline]);
      if (othersDone && lingering.length > 0) await Promise.race([allDone(lingering), handoverOver]);
      if (!othersDone) this.logger.warn({ tasks: this.list().length }, 'drain timeout reached; cancelling the remaining tasks');
    } finally {
      timers.abort();
    }
    const left = this.list();
    if (left.length === 0) return;
    const replicasLeft = linger ? left.filter((t) => linger.picks(t)) : [];
    if (replicasLeft.length > 0) {
      this.logger.info({ replicas: replicasLeft.length }, 'draining: no handover of the remaining service replicas; stopping them');
      await linger?.beforeStop?.();
    }
    for (const t of left) t.abort('shutdown');
    await Promise.all(left.map((t) => t.done));
  }
}

/** Tasks a drain keeps only for a while (service replicas), and what runs before they are stopped. */
export interface DrainLinger<T> {
  picks(task: T): boolean;
  waitMs: number;
  beforeStop?(): Promise<void> | void;
}
