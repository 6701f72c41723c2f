// One task attempt this node holds, from its input to its terminal update: it owns its
// AbortController (cancellation is just abort()), its live log forwarder and its reservation.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../common/clock.js';
import { InvalidTaskError, UnsafeArchiveError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { OutcomeKind, TaskState, type ReplicaStatus, type TaskOutcome } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment } from '../protocol/gen/hivemind/v1/node.js';
import { asAbortReason, type AbortReason, type ExecutionPhase, type ReplicaView, type TaskDataProgressEvent, type TaskExecutor, type TaskLogEvent, type TaskProgressEvent } from './contracts.js';
import { replicaSendDelay, type SentReplicaStatus } from './replica-status-throttle.js';
import { TaskProgressReporter } from './task-progress-reporter.js';
import { CacheFullError } from './data-cache/cache-errors.js';
import type { DataProgress } from './data-cache/data-cache.js';
import { NoDataCacheError, TaskData, dataHolder, dataNeeds, isDataRejection, type TaskDataDeps } from './task-data.js';
import type { Reservation } from './fit.js';
import type { LogForwarder } from './log-forwarder.js';
import { InputChecksumError } from './master-connection.js';
import type { UpdateExtra } from './outbox.js';
import type { WorkerStore } from './store/worker-store.js';
import { abortOutcome, failureOutcome, isResultRefusal, terminalMessage, terminalState } from './task-outcome.js';

/** Pull progress updates are throttled: the outbox must not fill with progress ticks. */
const PULL_PROGRESS_INTERVAL_MS = 2_000;

export const taskKey = (taskId: string, attempt: number) => `${taskId}#${attempt}`;

/** The name of an attempt's file in the spool dir (input archive, result). */
export function spoolName(taskId: string, attempt: number, suffix: string): string {
  return `${taskId.replace(/[^A-Za-z0-9._-]/g, '_')}-${attempt}.${suffix}`;
}

export interface TaskRunDeps {
  executor: Pick<TaskExecutor, 'probe' | 'execute'>;
  store: Pick<WorkerStore, 'getTask' | 'setExecution'>;
  clock: Clock;
  logger: Logger;
  spoolDir: string;
  /** Through the outbox. */
  update(task: { taskId: string; attempt: number }, state: TaskState, extra?: UpdateExtra): void;
  /** Fetches the verified input into `file`, waiting for the master as long as the task runs. */
  downloadInput(task: RunningTask, file: string): Promise<void>;
  uploadResult(task: RunningTask, result: { path: string; size: number; sha256: string }): Promise<void>;
  onLog(event: TaskLogEvent): void;
  onProgress(event: TaskProgressEvent): void;
  /** The node's data cache, for tasks that mount data sets; absent: such tasks fail. */
  data?: TaskDataDeps;
  onDataProgress?(event: TaskDataProgressEvent): void;
  /** The task's containers or volumes stayed behind (Docker was away). */
  onLeftovers(taskId: string): void;
  /** A service replica's status changed (every change; the master hears them throttled). */
  onReplica?(view: ReplicaView): void;
}

export class RunningTask {
  readonly taskId: string;
  readonly attempt: number;
  readonly key: string;
  readonly controller = new AbortController();
  /** Settles when the task's run has ended (and it has left the active set). */
  done: Promise<void> = Promise.resolve();
  private lastPullUpdateAt = 0;
  private lastDataUpdateAt = 0;
  private lastDataSent = -1;
  private replicaStatus: ReplicaStatus | undefined;
  private replicaSent: SentReplicaStatus | undefined;
  private replicaTimer: NodeJS.Timeout | undefined;
  /** The execution returned: a status the executor still sends would follow the terminal update. */
  private replicaOver = false;
  /** The task's own progress lines (docs/progress.md), to the master at most once a second. */
  readonly progress: TaskProgressReporter;

  constructor(
    readonly assignment: TaskAssignment,
    /** Held resources; cleared once the container is gone (the upload needs none). */
    public reservation: Reservation | undefined,
    readonly logs: LogForwarder,
    private readonly deps: TaskRunDeps,
  ) {
    this.taskId = assignment.taskId;
    this.attempt = assignment.attempt;
    this.key = taskKey(this.taskId, this.attempt);
    this.progress = new TaskProgressReporter({
      clock: deps.clock,
      send: (progress) => {
        if (!this.aborted) deps.update(this, TaskState.TASK_STATE_RUNNING, { progress });
      },
    });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  abort(reason: AbortReason): void {
    this.controller.abort(reason);
  }

  /** Whether this attempt is a service replica (spec.service set): it runs until stopped, with no result. */
  get isReplica(): boolean {
    return this.assignment.spec?.service !== undefined;
  }

  /** The replica and its latest status; undefined for a batch task. */
  get replica(): ReplicaView | undefined {
    const role = this.assignment.spec?.service;
    if (!role) return undefined;
    return { taskId: this.taskId, attempt: this.attempt, service: role.service, index: role.replica, status: this.replicaStatus };
  }

  /**
   * One task attempt from its input to its terminal update. `recovered`: an earlier process of
   * this worker took it and died first; its container is reattached when it was started, and
   * the attempt is run from the beginning otherwise.
   */
  async run(recovered: boolean): Promise<void> {
    const { taskId, attempt, assignment: a, deps } = this;
    const signal = this.controller.signal;
    const log = deps.logger.child({ taskId, attempt });
    const spool = deps.spoolDir;
    const inputFile = a.inputSize > 0 ? path.join(spool, spoolName(taskId, attempt, 'input.tar.gz')) : undefined;
    let resultFile: string | undefined;
    let data: TaskData | undefined;
    // The executor's removal of the attempt's containers, running behind the upload (see below).
    let cleanup: Promise<boolean> | undefined;
    try {
      // First, before anything awaits long: a reattached task's data must be leased again before
      // a new task's download could evict it.
      data = await this.acquireData();
      const recovery = recovered ? ((await deps.executor.probe(taskId, attempt, signal)) === 'started' ? 'reattach' : 'restart') : undefined;
      if (recovery) log.info({ recovery }, recovery === 'reattach' ? 'reattaching to the task an earlier run of this worker started' : 'running again a task an earlier run of this worker took but had not started');
      const needsInput = inputFile !== undefined && recovery !== 'reattach';
      if (needsInput) await deps.downloadInput(this, inputFile);
      const gpuIndexes = this.reservation?.gpuIndexes ?? [];
      const sentUntil = recovery === 'reattach' ? deps.store.getTask(taskId, attempt)?.logsSentUntilNs : undefined;
      const exec = await deps.executor.execute({
        taskId,
        attempt,
        spec: a.spec!,
        ...(needsInput ? { inputFile } : {}),
        ...(recovery ? { recovery } : {}),
        ...(sentUntil !== undefined ? { logsSentUntilNs: sentUntil } : {}),
        gpuIndexes,
        ...(data ? { dataMounts: data.binds } : {}),
        signal,
        onPhase: (phase) => this.onPhase(phase),
        onPullProgress: (current, total) => this.onPullProgress(current, total),
        onLog: (stream, data, atNs) => {
          this.logs.push(stream, data, atNs);
          this.progress.push(stream, data);
          deps.onLog({ taskId, attempt, stream, data });
        },
        ...(this.isReplica ? { onReplica: (status: ReplicaStatus) => this.onReplica(status) } : {}),
      });
      this.progress.finish();
      this.stopReplicaUpdates();
      if (exec.leftovers) deps.onLeftovers(taskId);
      cleanup = exec.cleanup;
      // The data sets stay leased until the container that binds them is removed.
      if (!cleanup) data?.release();
      // The container has ended: its CPU, memory and GPUs are free for the next task even
      // while the result is still uploading (and the dead container is being removed).
      this.reservation = undefined;
      await this.logs.close();
      resultFile = exec.result?.path;
      const outcome: TaskOutcome = { ...exec.outcome, resultSize: exec.result?.size ?? 0, resultSha256: exec.result?.sha256 ?? '' };
      deps.store.setExecution(taskId, attempt, outcome, exec.result, exec.logTail);
      if (signal.aborted) {
        deps.update(this, TaskState.TASK_STATE_CANCELLED, { outcome: abortOutcome(signal.reason, exec.outcome), message: this.stopMessage(signal.reason) });
        return;
      }
      if (this.isReplica) {
        // A replica has no result: it ended without being stopped (its image could not be
        // pulled, say). The master replaces it; whatever the executor collected is dropped.
        const message = `the replica ended: ${outcome.message || OutcomeKind[outcome.kind]}`;
        const state = terminalState(outcome, false);
        deps.update(this, state, { outcome: { ...outcome, resultSize: 0, resultSha256: '' }, message });
        log.warn({ state: TaskState[state], message }, 'replica ended without being stopped');
        return;
      }
      let uploaded = false;
      if (exec.result) {
        deps.update(this, TaskState.TASK_STATE_UPLOADING);
        await deps.uploadResult(this, exec.result);
        uploaded = true;
      }
      // Only now, with the result at the master, may it hear that the task ended.
      deps.update(this, terminalState(outcome, uploaded), { outcome, message: terminalMessage(outcome, uploaded) });
      log.info({ state: TaskState[terminalState(outcome, uploaded)], exitCode: outcome.exitCode }, 'task finished');
    } catch (err) {
      this.stopReplicaUpdates();
      if (signal.aborted) {
        const outcome = abortOutcome(signal.reason);
        deps.update(this, TaskState.TASK_STATE_CANCELLED, { outcome, message: this.stopMessage(signal.reason) });
        log.info({ reason: asAbortReason(signal.reason) }, 'task stopped');
        return;
      }
      const dataProblem = isDataRejection(err) || err instanceof InvalidTaskError;
      const inputProblem = err instanceof InputChecksumError || err instanceof UnsafeArchiveError || dataProblem;
      const outputRefused = isResultRefusal(err);
      const kind = inputProblem ? OutcomeKind.OUTCOME_KIND_INPUT_REJECTED : outputRefused ? OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED : OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR;
      const what = dataProblem
        ? 'data rejected'
        : inputProblem
          ? 'input rejected'
          : outputRefused
            ? 'output rejected by the master'
            : err instanceof CacheFullError || err instanceof NoDataCacheError
              ? 'data cache'
              : 'worker error';
      const message = `${what}: ${describeGrpcError(err)}`;
      log.warn({ err: message }, 'task failed');
      deps.update(this, TaskState.TASK_STATE_FAILED, { outcome: failureOutcome(kind, message), message });
    } finally {
      this.stopReplicaUpdates();
      // The terminal update is in the outbox; the run (and so a drain) still ends only once the
      // attempt's containers and volumes are removed, or known left for the reclaimer.
      if (cleanup && !(await cleanup.catch(() => false))) deps.onLeftovers(taskId);
      data?.release();
      await this.logs.close().catch(() => undefined);
      for (const f of [inputFile, resultFile]) {
        if (f) await rm(f, { force: true }).catch((err) => log.warn({ err: errorMessage(err), file: f }, 'cannot remove spool file'));
      }
    }
  }

  /** Leases the spec's data sets (fetching what the cache lacks), or undefined when it mounts none. */
  private async acquireData(): Promise<TaskData | undefined> {
    const needs = dataNeeds(this.taskId, this.attempt, this.assignment.spec?.data ?? []);
    if (needs.length === 0) return undefined;
    if (!this.deps.data) throw new NoDataCacheError();
    return TaskData.acquire(dataHolder(this.taskId, this.attempt), needs, this.deps.data, this.signal, (p) => this.onDataProgress(p));
  }

  /** Every tick to listeners; to the master (through the outbox) at most every 2 s, and the end. */
  private onDataProgress(p: DataProgress): void {
    this.deps.onDataProgress?.({ taskId: this.taskId, attempt: this.attempt, receivedBytes: p.receivedBytes, totalBytes: p.totalBytes });
    const now = this.deps.clock.now();
    const done = p.receivedBytes >= p.totalBytes;
    if (this.aborted || p.receivedBytes === this.lastDataSent || (!done && now - this.lastDataUpdateAt < PULL_PROGRESS_INTERVAL_MS)) return;
    // A task taken up after a restart may be past ACCEPTED (pulling, or reattached while running):
    // an ACCEPTED update would move its state backwards.
    const state = this.deps.store.getTask(this.taskId, this.attempt)?.state;
    if (state !== undefined && state !== TaskState.TASK_STATE_ACCEPTED) return;
    this.lastDataUpdateAt = now;
    this.lastDataSent = p.receivedBytes;
    this.deps.update(this, TaskState.TASK_STATE_ACCEPTED, { data: { receivedBytes: p.receivedBytes, totalBytes: p.totalBytes } });
  }

  /** Why the task stopped, as the terminal update says it. */
  private stopMessage(reason: unknown): string {
    // A replica stopped by its node's drain: nobody took it over within the handover wait (or the drain timeout).
    if (this.isReplica && asAbortReason(reason) === 'shutdown') return 'the node is shutting down: the replica was stopped';
    return abortOutcome(reason).message;
  }

  /**
   * Every status to listeners at once; to the master through the outbox, at most one a second
   * (the latest), except a change of health or a restart, which goes at once.
   */
  private onReplica(status: ReplicaStatus): void {
    this.replicaStatus = status;
    const view = this.replica;
    if (view) this.deps.onReplica?.(view);
    if (this.aborted || this.replicaOver) return;
    const delay = replicaSendDelay(this.replicaSent, status, this.deps.clock.now());
    if (delay === 0) return this.sendReplicaStatus();
    this.replicaTimer ??= setTimeout(() => {
      this.replicaTimer = undefined;
      if (!this.aborted && !this.replicaOver) this.sendReplicaStatus();
    }, delay);
  }

  private sendReplicaStatus(): void {
    const status = this.replicaStatus;
    if (!status) return;
    if (this.replicaTimer) clearTimeout(this.replicaTimer);
    this.replicaTimer = undefined;
    this.replicaSent = { atMs: this.deps.clock.now(), healthy: status.healthy, restarts: status.restarts };
    this.deps.update(this, TaskState.TASK_STATE_RUNNING, { replica: status });
  }

  /** The execution is over: no status may follow the terminal update. */
  private stopReplicaUpdates(): void {
    this.progress.stop();
    this.replicaOver = true;
    if (this.replicaTimer) clearTimeout(this.replicaTimer);
    this.replicaTimer = undefined;
  }

  private onPhase(phase: ExecutionPhase): void {
    if (this.aborted) return;
    if (phase === 'pulling') this.deps.update(this, TaskState.TASK_STATE_PULLING);
    else if (phase === 'running') this.deps.update(this, TaskState.TASK_STATE_RUNNING);
  }

  private onPullProgress(currentBytes: number, totalBytes: number): void {
    this.deps.onProgress({ taskId: this.taskId, attempt: this.attempt, kind: 'pull', currentBytes, totalBytes });
    const now = this.deps.clock.now();
    if (this.aborted || now - this.lastPullUpdateAt < PULL_PROGRESS_INTERVAL_MS) return;
    this.lastPullUpdateAt = now;
    this.deps.update(this, TaskState.TASK_STATE_PULLING, { pull: { currentBytes, totalBytes } });
  }
}
