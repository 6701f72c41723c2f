// The outbox of task updates: every update is stored first (the store gives it its seq), then
// delivered to the master in order, one at a time, so a master outage never loses one.
import { status } from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { grpcStatusOf, isRetryable, describeGrpcError } from '../protocol/grpc-errors.js';
import type { Capacity, TaskState } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskUpdate, TaskUpdateAck } from '../protocol/gen/hivemind/v1/node.js';
import type { Session } from './master-session.js';
import type { NewTaskUpdate, WorkerStore } from './store/worker-store.js';

/** Errors after which retrying an UpdateTask is pointless: the entry is dropped, not retried forever. */
export function isPermanentRejection(err: unknown): boolean {
  const code = grpcStatusOf(err);
  return code !== undefined && !isRetryable(err) && code !== status.UNAUTHENTICATED;
}

export type UpdateExtra = Partial<Pick<NewTaskUpdate, 'message' | 'outcome' | 'pull' | 'data' | 'replica' | 'progress'>>;

export interface OutboxDeps {
  store: Pick<WorkerStore, 'appendUpdate' | 'outbox' | 'ackOutbox'>;
  clock: Clock;
  logger: Logger;
  /** The session updates go to now; delivery stops when it is gone or replaced. */
  session(): Pick<Session, 'conn' | 'alive' | 'markLost'> | undefined;
  /** Sent along with every update, as of the moment it is sent. */
  capacity(): { free: Capacity; accepting: boolean };
  /** A stored update (for listeners). */
  onUpdate(update: TaskUpdate): void;
  /** The master's answer to a delivered update (superseded, cancel requested). */
  onAck(update: TaskUpdate, ack: TaskUpdateAck): void;
}

export class Outbox {
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;

  constructor(private readonly deps: OutboxDeps) {}

  /** Persists an update (seq assigned by the store), announces it and starts delivering it. */
  append(task: { taskId: string; attempt: number }, state: TaskState, extra: UpdateExtra = {}): TaskUpdate {
    const full = this.deps.store.appendUpdate({
      taskId: task.taskId,
      attempt: task.attempt,
      state,
      message: extra.message ?? '',
      outcome: extra.outcome,
      atMs: this.deps.clock.now(),
      pull: extra.pull,
      data: extra.data,
      replica: extra.replica,
      progress: extra.progress,
    });
    this.deps.onUpdate(full);
    this.kick();
    return full;
  }

  /** Starts a delivery; a failure only waits for the next session. */
  kick(): void {
    this.flush().catch((err) => this.deps.logger.debug({ err: describeGrpcError(err) }, 'outbox delivery paused until reconnect'));
  }

  /** Delivers the outbox in order, one update at a time; single-flight so order holds. */
  flush(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
    });
    return this.pumping;
  }

  /** Resolves once no delivery is under way (a pump bound to an older session has ended). */
  async settled(): Promise<void> {
    await this.pumping?.catch(() => undefined);
  }

  private async pump(): Promise<void> {
    do {
      this.pumpAgain = false;
      for (;;) {
        const session = this.deps.session();
        if (!session?.alive) return;
        const batch = this.deps.store.outbox(100);
        if (batch.length === 0) break;
        for (const entry of batch) {
          if (this.deps.session() !== session || !session.alive) return;
          let ack: TaskUpdateAck;
          try {
            ack = await session.conn.updateTask({ ...entry.update, ...this.deps.capacity() });
          } catch (err) {
            if (isPermanentRejection(err)) {
              this.deps.logger.warn({ taskId: entry.update.taskId, seq: entry.update.seq, err: describeGrpcError(err) }, 'the master refused a task update; dropping it');
              this.deps.store.ackOutbox(entry.id);
              continue;
            }
            session.markLost(err instanceof Error ? err : new Error(String(err)));
            throw err;
          }
          this.deps.store.ackOutbox(entry.id);
          this.deps.onAck(entry.update, ack);
        }
      }
    } while (this.pumpAgain);
  }
}
