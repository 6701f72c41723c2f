// A task's files to and from the master: the verified input download (one clean retry after a
// checksum mismatch) and the result upload, single-flight per attempt and marked in the store.
import { rm } from 'node:fs/promises';
import type { Logger } from '../common/logger.js';
import { NotConnectedError } from '../protocol/grpc-errors.js';
import type { TaskProgressEvent } from './contracts.js';
import { InputChecksumError } from './master-connection.js';
import type { MasterSession } from './master-session.js';
import { taskKey } from './running-task.js';
import type { WorkerStore } from './store/worker-store.js';

export type ResultFile = { path: string; size: number; sha256: string };

export interface TaskTransfersDeps {
  master: Pick<MasterSession, 'withMaster' | 'session' | 'closingSignal'>;
  store: Pick<WorkerStore, 'getTask' | 'markResultUploaded'>;
  logger: Logger;
  /** The abort signal of the attempt if it runs here. */
  taskSignal(taskId: string, attempt: number): AbortSignal | undefined;
  onProgress(event: TaskProgressEvent): void;
}

export class TaskTransfers {
  private readonly uploads = new Map<string, Promise<void>>();

  constructor(private readonly deps: TaskTransfersDeps) {}

  async downloadInput(task: { taskId: string; attempt: number; assignment: { inputSha256: string }; signal: AbortSignal }, file: string): Promise<void> {
    const { taskId, attempt, assignment: a, signal } = task;
    const { master } = this.deps;
    try {
      await master.withMaster(signal, 'input download', (conn) => conn.downloadInput(taskId, attempt, file, a.inputSha256, signal));
    } catch (err) {
      if (!(err instanceof InputChecksumError)) throw err;
      // A stale partial file from an earlier run can spoil the hash: one clean retry.
      this.deps.logger.warn({ taskId, attempt }, 'input checksum mismatch; downloading again from the start');
      await rm(file, { force: true });
      await master.withMaster(signal, 'input download', (conn) => conn.downloadInput(taskId, attempt, file, a.inputSha256, signal));
    }
  }

  /** Uploads until done, waiting for the master and retrying transient failures. */
  async uploadResult(task: { taskId: string; attempt: number }, result: ResultFile, signal?: AbortSignal): Promise<void> {
    const sig = signal ?? this.deps.taskSignal(task.taskId, task.attempt) ?? this.deps.master.closingSignal;
    await this.deps.master.withMaster(sig, 'result upload', () => this.uploadOnce(task, result, sig));
  }

  /** Single-flight per task: the reconnect sequence and the task loop may both ask. */
  uploadOnce(task: { taskId: string; attempt: number }, result: ResultFile, signal: AbortSignal): Promise<void> {
    const key = taskKey(task.taskId, task.attempt);
    if (this.deps.store.getTask(task.taskId, task.attempt)?.result?.uploaded) return Promise.resolve();
    let p = this.uploads.get(key);
    if (!p) {
      const session = this.deps.master.session;
      if (!session?.alive) return Promise.reject(new NotConnectedError());
      p = session.conn
        .uploadResult(task.taskId, task.attempt, result.path, result.sha256, signal, (currentBytes, totalBytes) =>
          this.deps.onProgress({ taskId: task.taskId, attempt: task.attempt, kind: 'upload', currentBytes, totalBytes }),
        )
        .then(() => {
          this.deps.store.markResultUploaded(task.taskId, task.attempt);
          this.deps.logger.info({ taskId: task.taskId, attempt: task.attempt, size: result.size }, 'result uploaded');
        })
        .finally(() => this.uploads.delete(key));
      this.uploads.set(key, p);
    }
    return p;
  }
}
