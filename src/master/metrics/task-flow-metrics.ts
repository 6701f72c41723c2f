// Task series from the master's 'task' events (master-events.ts), so the scheduler and the task
// manager stay untouched: submissions, placement latency (queue → ASSIGNED) and finished tasks by
// outcome. The events carry committed rows; the clock reads when each was seen.
import type { Clock } from '../../common/clock.js';
import { OutcomeKind, TaskState } from '../../protocol/gen/hivemind/v1/common.js';
import { isTerminal, type TaskRow } from '../master-store.js';

export interface TaskFlowSink {
  taskSubmitted(): void;
  taskPlaced(seconds: number): void;
  taskFinished(outcome: string): void;
}

/** "OUTCOME_KIND_OOM_KILLED" → "oom_killed"; a kind this build does not know → "unknown". */
export function outcomeWord(kind: OutcomeKind | undefined): string {
  const name = kind === undefined ? undefined : (OutcomeKind[kind] as string | undefined);
  if (!name || kind === OutcomeKind.UNRECOGNIZED) return 'unknown';
  return name.replace(/^OUTCOME_KIND_/, '').toLowerCase();
}

type Row = Pick<TaskRow, 'id' | 'state' | 'attempt' | 'createdAt' | 'updatedAt' | 'outcome'>;

export class TaskFlowMetrics {
  /** When each queued task was first seen queued (this master's clock); one entry per queued task. */
  private readonly queuedSince = new Map<string, number>();

  constructor(private readonly sink: TaskFlowSink, private readonly clock: Clock) {}

  /** Give every 'task' event here. */
  onTask(t: Row): void {
    if (t.state === TaskState.TASK_STATE_QUEUED) {
      // Queue reasons re-emit a queued row: the first sighting is when it entered the queue.
      if (this.queuedSince.has(t.id)) return;
      // A new row (created and last changed together, first attempt) is a submission; a requeue
      // after a lost node or a rejection has changed since it was created.
      if (t.attempt === 1 && t.createdAt === t.updatedAt) this.sink.taskSubmitted();
      this.queuedSince.set(t.id, this.clock.now());
      return;
    }
    const since = this.queuedSince.get(t.id);
    this.queuedSince.delete(t.id);
    // Queued before this master started: its wait is unknown here, not observed.
    if (t.state === TaskState.TASK_STATE_ASSIGNED && since !== undefined) this.sink.taskPlaced(Math.max(0, this.clock.now() - since) / 1000);
    if (isTerminal(t.state)) this.sink.taskFinished(t.state === TaskState.TASK_STATE_CANCELLED && !t.outcome ? 'cancelled' : outcomeWord(t.outcome?.kind));
  }
}
