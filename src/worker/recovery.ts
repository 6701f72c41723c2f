// Recovery after a restart: tasks an earlier process of this worker left unfinished (a crash,
// kill -9, power loss) are settled, taken up again (reattached or rerun), or have their results
// uploaded on the next connect.
import { rm } from 'node:fs/promises';
import type { Logger } from '../common/logger.js';
import { isRetryable, describeGrpcError } from '../protocol/grpc-errors.js';
import { OutcomeKind, TaskState } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment } from '../protocol/gen/hivemind/v1/node.js';
import { reservationFor, type NodeBudget, type Reservation } from './fit.js';
import type { Session } from './master-session.js';
import type { UpdateExtra } from './outbox.js';
import type { TaskRecord, WorkerStore } from './store/worker-store.js';
import { failureOutcome, isResultRefusal, terminalMessage, terminalState } from './task-outcome.js';
import type { TaskTransfers } from './task-transfers.js';

export interface RecoveryDeps {
  store: Pick<WorkerStore, 'unfinishedTasks' | 'pendingUploads'>;
  budget: NodeBudget;
  logger: Logger;
  transfers: Pick<TaskTransfers, 'uploadOnce'>;
  /** Aborted when the worker closes. */
  closingSignal: AbortSignal;
  /** The abort signal of the attempt if it runs here (its own loop then reports its end). */
  taskSignal(taskId: string, attempt: number): AbortSignal | undefined;
  /** Through the outbox. */
  update(task: { taskId: string; attempt: number }, state: TaskState, extra?: UpdateExtra): void;
  /** Runs an attempt again as recovered (reattach or restart). */
  takeUp(assignment: TaskAssignment, reservation: Reservation): void;
}

export class Recovery {
  constructor(private readonly deps: RecoveryDeps) {}

  /**
   * Tasks left unfinished by a previous process: results waiting for upload are resumed on
   * connect; a task that had not ended is taken up again — its container reattached if it was
   * started, the attempt run from the beginning if not — before the worker subscribes, so the
   * master sees it as still running here.
   */
  recoverInterruptedTasks(): void {
    for (const rec of this.deps.store.unfinishedTasks()) {
      if (rec.result && !rec.result.uploaded) continue;
      if (rec.outcome) {
        this.finishRecovered(rec, rec.result?.uploaded ?? false);
      } else if (!rec.assignment.spec) {
        const message = 'the worker restarted while this task was running, and its record has no spec to run it again; the attempt is lost';
        this.deps.update(rec, TaskState.TASK_STATE_FAILED, { outcome: failureOutcome(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, message), message });
      } else {
        const held = reservationFor(rec.assignment.spec.limits, this.deps.budget);
        this.deps.logger.info({ taskId: rec.taskId, attempt: rec.attempt }, 'taking up a task an earlier run of this worker left unfinished');
        this.deps.takeUp(rec.assignment, { cpus: held.cpus, memoryBytes: held.memoryBytes, gpuIndexes: rec.gpuIndexes });
      }
    }
  }

  /** Before subscribing: push every result the master does not hold yet. */
  async resumePendingUploads(session: Session): Promise<void> {
    for (const rec of this.deps.store.pendingUploads()) {
      if (!session.alive) return;
      const own = this.deps.taskSignal(rec.taskId, rec.attempt);
      const signal = own ?? this.deps.closingSignal;
      try {
        await this.deps.transfers.uploadOnce(rec, rec.result!, signal);
      } catch (err) {
        if (isRetryable(err) && !signal.aborted) throw err;
        // Aborted or refused for good: an active task's own loop reports it; a recovered one we settle here.
        if (!own && !signal.aborted) {
          this.finishRecovered(rec, false, `result upload failed: ${describeGrpcError(err)}`, isResultRefusal(err) ? OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED : undefined);
        }
        continue;
      }
      if (!own) this.finishRecovered(rec, true);
    }
  }

  /** Terminal update for a task whose run ended in an earlier process. */
  private finishRecovered(rec: TaskRecord, uploaded: boolean, failure?: string, failureKind = OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR): void {
    const outcome = failure ? failureOutcome(failureKind, failure) : rec.outcome!;
    this.deps.update(rec, failure ? TaskState.TASK_STATE_FAILED : terminalState(outcome, uploaded), { outcome, message: failure ?? terminalMessage(outcome, uploaded) });
    if (rec.result) void rm(rec.result.path, { force: true }).catch(() => undefined);
  }
}
