// The types the worker shares with the layers around it: the executor port the runtime
// implements, the events and records the local monitor reads. They import no worker internals.
import type { Duplex } from 'node:stream';
import { OutcomeKind, type NodeFacts, type ReplicaStatus, type ResourceReport, type TaskOutcome, type TaskProgress, type TaskSpec, type TaskState, type TaskUsage } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment, TaskUpdate } from '../protocol/gen/hivemind/v1/node.js';
import type { ExecOptions, ExecProcess } from '../runtime/exec-process.js';

// ---------------------------------------------------------------- lifecycle

/**
 * - `starting`: options compiled, store opened; nothing sent to the master yet.
 * - `registering`: calling Register (enrollment token on first start, node credential later).
 * - `connected`: registered, report stream open and subscribed to commands; accepts tasks.
 * - `reconnecting`: the master went away; retrying with backoff. Running tasks keep running
 *   and their updates queue in the outbox.
 * - `draining`: no new tasks are accepted; running tasks are allowed to finish until the
 *   drain timeout, then cancelled with reason 'shutdown'.
 * - `stopped`: everything closed. Terminal.
 */
export type LifecycleState = 'starting' | 'registering' | 'connected' | 'reconnecting' | 'draining' | 'stopped';

export interface LifecycleChange {
  from: LifecycleState;
  to: LifecycleState;
  reason: string;
}

// ---------------------------------------------------------------- events

export interface TaskLogEvent {
  taskId: string;
  attempt: number;
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

export interface TaskProgressEvent {
  taskId: string;
  attempt: number;
  kind: 'pull' | 'upload';
  currentBytes: number;
  totalBytes: number;
}

/**
 * A task's data sets being fetched into the node's data cache: bytes summed over all its mounts
 * (those already cached count as received). The last event of a fetch has received = total.
 */
export interface TaskDataProgressEvent {
  taskId: string;
  attempt: number;
  receivedBytes: number;
  totalBytes: number;
}

/** A service replica on this node and how it is doing (its executor's latest word). */
export interface ReplicaView {
  taskId: string;
  attempt: number;
  /** The service's name. */
  service: string;
  /** The replica's index in the service. */
  index: number;
  /** Undefined until the executor first said how it is. */
  status: ReplicaStatus | undefined;
}

/** Why the gateway pipe closed connections without an answer (they never proved to be the master). */
export type PipeRefusal = 'source' | 'key' | 'malformed' | 'timeout' | 'over-limit';

/**
 * One replica attempt's traffic through the node's gateway pipe since the worker started. The
 * master's gateway opens one pipe connection per client request (or WebSocket), so connections
 * per second approximate the replica's requests per second.
 */
export interface ReplicaPipeCounters {
  taskId: string;
  attempt: number;
  /** Connections relayed to the replica (answered OK). */
  connections: number;
  /** Of them, relaying now. */
  open: number;
  /** Bytes from the gateway to the replica (requests). */
  bytesIn: number;
  /** Bytes from the replica to the gateway (responses). */
  bytesOut: number;
}

export interface GatewayPipeCounters {
  /** Connections relaying to a replica now. */
  open: number;
  /** Connections answered OK since start. */
  relayed: number;
  /** Connections answered ERR since start. */
  errors: number;
  /** Connections closed without an answer since start, by why. */
  refused: Record<PipeRefusal, number>;
  /** Per replica attempt (bounded: idle ones of replicas long gone are forgotten first). */
  replicas: ReplicaPipeCounters[];
}

/** The node's gateway pipe as the monitor sees it: where it listens and what went through it. */
export interface GatewayPipeView {
  port: number;
  counters: GatewayPipeCounters;
}

/** What a local monitor may subscribe to, instead of reaching into the worker. */
export interface WorkerEvents {
  'state-changed': [LifecycleChange];
  /** pause()/resume(): whether new tasks are taken changed. */
  'accepting-changed': [boolean];
  'task-updated': [TaskUpdate];
  'task-log': [TaskLogEvent];
  /** Image pull and result upload progress, unthrottled: listeners throttle. */
  'task-progress': [TaskProgressEvent];
  /** Data set fetch progress of a task (before its image pull), unthrottled: listeners throttle. */
  'task-data-progress': [TaskDataProgressEvent];
  report: [ResourceReport];
  contribution: [ContributionPoint];
  /** The master's operator removed this node: the worker stopped talking to it for good. */
  removed: [string];
  /** A service replica's status changed (every change, unthrottled; the master hears at most one a second). */
  'replica-status': [ReplicaView];
}

// ---------------------------------------------------------------- records

/** A data set in the node's cache: one file, or a directory unpacked from its canonical archive. */
export type CacheDataKind = 'file' | 'dir';
/** 'downloading' until its bytes hashed to its digest (and a directory was unpacked), then 'ready'. */
export type CacheEntryState = 'downloading' | 'ready';

export interface CacheEntry {
  /** sha256 of the file, or of the directory's canonical archive (64 lowercase hex digits). */
  digest: string;
  kind: CacheDataKind;
  sizeBytes: number;
  state: CacheEntryState;
  pinned: boolean;
  createdAt: number;
  lastUsedAt: number;
  /** How many times a task was handed the entry. */
  uses: number;
  /** Tasks (or a download) holding it now: never evicted or removed while above 0. */
  leases: number;
}

/** The data cache's counters since the worker started. */
export interface CacheCounters {
  hits: number;
  misses: number;
  evictions: number;
  bytesDownloaded: number;
}

/** The counters with the cache's size now (entries and bytes include downloads under way). */
export type CacheStats = CacheCounters & { entries: number; bytes: number; budgetBytes: number };

/**
 * A read-only window on the node's data cache, for the monitor: its entries (most recently used
 * first) and its counters (hits, misses, evictions, bytes downloaded since the worker started).
 */
export interface DataCacheView {
  stats(): CacheStats;
  list(): CacheEntry[];
}

/** Facts that change rarely (sent with Register): the protocol's NodeFacts without what the worker adds (labels, versions, maxTasks). */
export type HostFacts = Omit<NodeFacts, 'labels' | 'workerVersion' | 'maxTasks' | 'allowsEgress' | 'isolations' | 'engine' | 'unenforcedLimits'>;

export interface TaskRecord {
  taskId: string;
  attempt: number;
  assignment: TaskAssignment;
  state: TaskState;
  outcome?: TaskOutcome;
  gpuIndexes: number[];
  result?: { path: string; size: number; sha256: string; uploaded: boolean };
  logTail: string;
  /** Docker's time (ns) of the last live log chunk handed to the master; absent before the first. */
  logsSentUntilNs?: bigint;
  /** The task's own latest progress report (docs/progress.md), as last sent to the master. */
  progress?: TaskProgress;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
}

export interface TaskEventRecord {
  seq: number;
  state: TaskState;
  message: string;
  at: number;
}

/** History filters of the local monitor. 'running' = any live state. */
export type HistoryFilter = 'succeeded' | 'failed' | 'cancelled' | 'running';

export interface HistoryPage {
  tasks: TaskRecord[];
  /** Cursor for the next (older) page; undefined on the last page. */
  nextBefore?: string;
}

/** An image this worker pulled itself: the only kind its image GC may ever remove. */
export interface PulledImageRecord {
  /** The reference as the task named it (e.g. `alpine:3.20`), as it was pulled. */
  image: string;
  pulledAt: number;
  /** The last time a task used it (the pull counts as a use). */
  lastUsedAt: number;
}

export interface ContributionPoint {
  atMs: number;
  intervalMs: number;
  score: number;
  multiplier: number;
  cpuPercent: number;
  memoryPercent: number;
  /** Sum of the GPUs' utilisation percentages (two GPUs at 50 % = 100). */
  gpuPercent: number;
  /** Running total including this point. */
  total: number;
}

/** What the node may give to tasks in total. */
export interface NodeBudget {
  /** Concurrent task slots. */
  maxTasks: number;
  /** CPU cores tasks may use: the machine's cores, or the operator's lower cap. */
  cpus: number;
  /** Memory tasks may use: total minus the reserve kept for the OS and the worker (or the cap). */
  memoryBytes: number;
  /** GPU indexes present on the node. */
  gpuIndexes: number[];
  /** What a task with a zero ("node default") limit is accounted as. */
  taskDefaults: { cpus: number; memoryBytes: number };
}

// ---------------------------------------------------------------- executor port
// The boundary between the worker's control loop and whatever runs a task (the Docker task
// runner in production, a fake in unit tests).

export type ExecutionPhase = 'pulling' | 'running' | 'collecting';

/** A data set from the node's cache, where the container sees it (mounted read-only). */
export interface DataBind {
  hostPath: string;
  containerPath: string;
}

export interface TaskExecution {
  taskId: string;
  attempt: number;
  spec: TaskSpec;
  /** Local path of the verified input archive (tar.gz), when the task has one. */
  inputFile?: string;
  /** The task's data sets, leased from the node's data cache for the attempt: mount each read-only. */
  dataMounts?: DataBind[];
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
  /**
   * A service replica (spec.service set) only: its status whenever it changes (started, exited,
   * waiting to restart, healthy or not). Such an execution runs until `signal` aborts; its container
   * is restarted with backoff when it exits; it ends with a CANCELLED or SHUTDOWN outcome and no
   * result.
   */
  onReplica?(status: ReplicaStatus): void;
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
  /**
   * With a result to upload: settles once the attempt's containers and volumes are removed, true
   * when all went, false when something stayed (as `leftovers`). The result is returned before that
   * removal, so the upload and the terminal update do not wait for Docker's bookkeeping; the run
   * waits for it at its end. Without a result the removal came first (it may free a full disk).
   */
  cleanup?: Promise<boolean>;
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
  /**
   * A new connection to the container port of a service replica this executor runs now (the
   * spec's service.port, on the container's own loopback). Rejects with ReplicaUnreachableError
   * when the attempt is not a running replica here or its port does not answer. An executor
   * without it runs no services: the node then offers no gateway pipe and gets no replicas.
   */
  connect?(taskId: string, attempt: number, signal?: AbortSignal): Promise<Duplex>;
  /**
   * Whether this host can run service replicas (the runtime's own checks, e.g. nsenter present).
   * Absent: it can whenever connect() exists. Asked once, when the worker starts.
   */
  servicesSupported?(): Promise<{ ok: boolean; reason?: string }>;
  /**
   * Starts a command in the running container of an attempt this executor runs now, as the task's
   * own user (docs/exec.md). Rejects with ExecRefusedError when the attempt has no running
   * container here. An executor without it takes no exec sessions.
   */
  exec?(taskId: string, attempt: number, request: ExecRequest, signal?: AbortSignal): Promise<ExecProcess>;
}

/** A command to run in a task's container: what ExecOptions holds except the user, which the executor decides. */
export type ExecRequest = Omit<ExecOptions, 'user'>;
