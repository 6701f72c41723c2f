// Task series from the master's 'task' events (master-events.ts): submissions and finished tasks
// by outcome. Placement latency comes from the task manager itself (TaskManagerOptions.onPlaced),
// which knows when each task entered its queue, also for tasks queued before a restart.
import { OutcomeKind, TaskState } from '../../protocol/gen/hivemind/v1/common.js';
import { isTerminal, type TaskRow } from '../master-store.js';

export interface TaskFlowSink {
  taskSubmitted(): void;
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
  constructor(private readonly sink: TaskFlowSink) {}

  /** Give every 'task' event here. */
  onTask(t: Row): void {
    // A new row (created and last changed together, first attempt) is a submission; a requeue
    // after a lost node or a rejection has changed since it was created. Queue reasons are
    // computed when read, so a queued row is not emitted again unchanged.
    if (t.state === TaskState.TASK_STATE_QUEUED) {
      if (t.attempt === 1 && t.createdAt === t.updatedAt) this.sink.taskSubmitted();
      return;
    }
    if (isTerminal(t.state)) this.sink.taskFinished(t.state === TaskState.TASK_STATE_CANCELLED && !t.outcome ? 'cancelled' : outcomeWord(t.outcome?.kind));
  }
}
