// The boundary between the worker's control loop and whatever runs a task (the Docker task
// runner in production, a fake in unit tests).
import { OutcomeKind, type TaskSpec, type TaskUsage } from '../protocol/gen/hivemind/v1/common.js';

export type ExecutionPhase = 'pulling' | 'running' | 'collecting';

export interface TaskExecution {
  taskId: string;
  attempt: number;
  spec: TaskSpec;
  /** Local path of the verified input archive (tar.gz), when the task has one. */
  inputFile?: string;
  /** GPU indexes reserved for this task by the worker (length = spec.limits.gpus). */
  gpuIndexes: number[];
  /**
   * Aborting cancels the task: the container is killed and removed. `signal.reason` is an
   * `AbortReason` saying why, which decides the outcome kind.
   */
  signal: AbortSignal;
  onPhase(phase: ExecutionPhase): void;
  onPullProgress(currentBytes: number, totalBytes: number): void;
  /** Live output, message by message, with Docker's time of each (ns). */
  onLog(stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint): void;
  /**
   * Set when an earlier process of this worker took the attempt and died with it unfinished.
   * 'reattach': its container was started (see probe): follow it to its end, or collect it if
   * it already ended, within what is left of the timeout. 'restart': it never started, or its
   * container is gone: remove whatever of the attempt is left and run it from the beginning
   * (tasks are hermetic: no network, fresh volumes, only /output counts).
   */
  recovery?: 'reattach' | 'restart';
  /**
   * With 'reattach': the time (ns) of the last message the earlier process forwarded. The log
   * tail is rebuilt from the container's whole log; `onLog` sees only what came after this.
   */
  logsSentUntilNs?: bigint;
}

export type AbortReason = 'cancelled' | 'shutdown' | 'superseded';

/** The AbortReason of an abort signal's `reason`; anything else is a cancellation. */
export function asAbortReason(reason: unknown): AbortReason {
  return reason === 'shutdown' || reason === 'superseded' ? reason : 'cancelled';
}

/** How a task stopped for `reason` ends: SHUTDOWN when the node shut down, CANCELLED otherwise. */
export function abortOutcomeKind(reason: AbortReason): OutcomeKind {
  return reason === 'shutdown' ? OutcomeKind.OUTCOME_KIND_SHUTDOWN : OutcomeKind.OUTCOME_KIND_CANCELLED;
}

export interface ExecutionResult {
  outcome: {
    kind: OutcomeKind;
    exitCode: number;
    message: string;
    durationMs: number;
  };
  /** The gzipped /output archive in the worker's spool dir; absent when nothing was collected. */
  result?: { path: string; size: number; sha256: string };
  /** The kept end of the combined log (bounded). */
  logTail: string;
  /**
   * Set when the task's containers or volumes could not be removed (the Docker daemon was away):
   * the worker reclaims them as soon as Docker answers again.
   */
  leftovers?: true;
}

export interface TaskExecutor {
  execute(exec: TaskExecution): Promise<ExecutionResult>;
  /** CPU and memory of each task whose process is running now (for the resource report). */
  usage(): Promise<TaskUsage[]>;
  /**
   * Removes what earlier runs of this node left behind (containers, volumes) that belong to no
   * task it runs now nor to `keepTaskIds`. Touches nothing without this node's labels.
   */
  reclaim(keepTaskIds: readonly string[]): Promise<{ containers: string[]; volumes: string[] }>;
  /** Whether the container of an attempt taken by an earlier process exists and was started. */
  probe(taskId: string, attempt: number, signal?: AbortSignal): Promise<'started' | 'not-started'>;
}
