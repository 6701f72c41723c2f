// How far each task's data sets have come to its node ("fetching data"), as the node last said in
// a TaskUpdate: kept in memory only (it is stale the moment the node restarts or the task moves
// on), one entry per task, dropped when the task leaves ACCEPTED.
import { TaskState, type DataProgress } from '../protocol/gen/hivemind/v1/common.js';

export class DataProgressBoard {
  private readonly latest = new Map<string, DataProgress>();

  /** An applied update of the task: its progress while ACCEPTED, otherwise nothing is kept. */
  note(taskId: string, state: TaskState, progress: DataProgress | undefined): void {
    if (state === TaskState.TASK_STATE_ACCEPTED && progress) this.latest.set(taskId, progress);
    else if (state !== TaskState.TASK_STATE_ACCEPTED) this.latest.delete(taskId);
  }

  /** The latest progress of a task in `state`: only an ACCEPTED task is fetching data. */
  of(taskId: string, state: TaskState): DataProgress | undefined {
    return state === TaskState.TASK_STATE_ACCEPTED ? this.latest.get(taskId) : undefined;
  }

  forget(taskId: string): void {
    this.latest.delete(taskId);
  }

  get size(): number {
    return this.latest.size;
  }
}
