// The JSON the monitor serves and pushes (docs/monitor.md is the contract with web/).
// Times are epoch milliseconds, sizes bytes, CPU in percent of one core (tasks) or of the machine.
import type { GpuUsage, ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { ContributionPoint } from '../worker/contracts.js';

export type LiveTaskState = 'accepted' | 'pulling' | 'running' | 'uploading';
export type TaskRowState = LiveTaskState | 'succeeded' | 'failed' | 'cancelled' | 'rejected';
export type OutcomeKindName =
  | 'exited'
  | 'oom_killed'
  | 'timed_out'
  | 'cancelled'
  | 'start_failed'
  | 'output_rejected'
  | 'input_rejected'
  | 'node_lost'
  | 'shutdown'
  | 'internal_error'
  | 'unspecified';

export interface LimitsView {
  cpus: number;
  memoryBytes: number;
  pids: number;
  gpus: number;
  timeoutMs: number;
}

export interface Progress {
  currentBytes: number;
  totalBytes: number;
}

/** A task's own progress report (docs/progress.md) as the page gets it; metrics a plain object. */
export interface TaskProgressView {
  fraction: number | null;
  message: string;
  metrics: Record<string, number>;
  atMs: number;
  updates: number;
  rejected: number;
}

export interface RunningTaskView {
  taskId: string;
  attempt: number;
  image: string;
  command: string[];
  limits: LimitsView;
  state: LiveTaskState;
  acceptedAtMs: number;
  startedAtMs: number | null;
  usage: { cpuPercent: number; memoryBytes: number } | null;
  pull: Progress | null;
  upload: Progress | null;
  /** While accepted: the task's data sets coming into the node's cache ("fetching data"). */
  data: Progress | null;
  /** While running: the task's own latest progress report, as the node last sent it to the master. */
  progress: TaskProgressView | null;
}

export interface OutcomeView {
  kind: OutcomeKindName;
  exitCode: number;
  message: string;
  durationMs: number;
  resultSize: number;
  resultSha256: string;
}

export interface TaskRowView {
  taskId: string;
  attempt: number;
  image: string;
  command: string[];
  state: TaskRowState;
  outcome: OutcomeView | null;
  createdAtMs: number;
  finishedAtMs: number | null;
  /** The task's own last progress report (docs/progress.md), if it gave any. */
  progress: TaskProgressView | null;
}

export interface TaskDetailView extends TaskRowView {
  limits: LimitsView;
  /** Names only: values may be secrets. */
  env: string[];
  events: { state: string; message: string; atMs: number }[];
  logTail: string;
  /** Exec sessions into this attempt, oldest first (`hivemind exec`); endedAtMs and exitCode null while one runs. */
  execSessions: { startedAtMs: number; command: string[]; tty: boolean; endedAtMs: number | null; exitCode: number | null; error: string }[];
}

/** A resource sample as the page gets it: the report's machine-wide figures (no tasks, no capacity). */
export type SampleView = Pick<
  ResourceReport,
  'atMs' | 'cpuPercent' | 'memoryUsedBytes' | 'memoryTotalBytes' | 'diskUsedBytes' | 'diskTotalBytes' | 'netRxBytesPerSec' | 'netTxBytesPerSec'
> & { gpus: GpuUsage[] };

export interface TunnelView {
  interface: string;
  address: string;
  masterEndpoint: string;
  implementation: string;
  state: string;
  latestHandshakeMs: number;
  handshakeAgeMs: number | null;
  rxBytes: number;
  txBytes: number;
}

/** One contribution point without the running total (which the status carries once). */
export type ContributionView = Omit<ContributionPoint, 'total'>;

export interface StatusView {
  node: {
    id: string | null;
    name: string;
    state: string;
    accepting: boolean;
    paused: boolean;
    masterAddress: string;
    version: string;
    /** It offers the egress network (--allow-egress, firewall in place). */
    egress: boolean;
    startedAtMs: number;
    uptimeMs: number;
    problems: string[];
    /** The isolations it offers tasks ("runc", "gvisor"), as the master was told. */
    isolations: string[];
    /** The container engine it runs tasks on ("docker", "podman", "podman-rootless"). */
    engine: string;
    /** The limits that engine cannot enforce ("cpus", "memory", "pids"); empty: all hold. */
    unenforcedLimits: string[];
  };
  docker: { ok: boolean; version: string | null; message: string | null };
  tunnel: TunnelView | null;
  budget: { maxTasks: number; cpus: number; memoryBytes: number; gpus: number };
  free: { cpus: number; memoryBytes: number; taskSlots: number };
  contribution: { last: ContributionView | null; total: number };
  running: RunningTaskView[];
}

export interface LogPush {
  taskId: string;
  attempt: number;
  text: string;
  dropped: number;
}

/** One data cache entry as the page shows it. */
export interface CacheEntryView {
  digest: string;
  kind: 'file' | 'dir';
  sizeBytes: number;
  state: 'downloading' | 'ready';
  pinned: boolean;
  /** Held by a task (or its download) now: never evicted. */
  inUse: boolean;
  uses: number;
  lastUsedAtMs: number;
}

/** The node's data cache: totals, budget, hit rate and the most recently used entries. */
export interface CacheView {
  entries: CacheEntryView[];
  /** All entries, including those beyond `entries` (the list is cut at MAX_CACHE_ENTRIES_SHOWN). */
  entryCount: number;
  bytes: number;
  budgetBytes: number;
  pinnedBytes: number;
  inUseBytes: number;
  hits: number;
  misses: number;
  /** hits / (hits + misses) since the worker started; null before the first use. */
  hitRate: number | null;
  evictions: number;
  bytesDownloaded: number;
}

/**
 * A replica's state on this node: 'starting' until its container runs (first start, or a restart
 * after its backoff), 'running' while it does, 'restarting' while it waits out its restart backoff.
 */
export type ReplicaStateName = 'starting' | 'running' | 'restarting';

export interface ReplicaRowView {
  taskId: string;
  attempt: number;
  service: string;
  index: number;
  state: ReplicaStateName;
  /** Answering its health check (in the gateway's rotation). */
  healthy: boolean;
  /** The last failed check; empty while healthy. */
  healthMessage: string;
  /** Container restarts in this attempt. */
  restarts: number;
  /** Why it last stopped ("exited with code 3", "OOM killed", "unhealthy: …"); null before it ever stopped. */
  lastExit: string | null;
  lastExitAtMs: number | null;
  /** While restarting: when. */
  restartAtMs: number | null;
  /** Its traffic through the node's gateway pipe since the worker started. */
  pipe: { connections: number; open: number; bytesIn: number; bytesOut: number };
  /**
   * Pipe connections per second over the last 10 s: the gateway opens one pipe connection per
   * request (or WebSocket), so this approximates requests per second. Null until a second of data.
   */
  requestsPerSecond: number | null;
}

export interface ServicesView {
  /** The gateway pipe while it listens; null on a node that hosts no services. */
  gateway: null | {
    port: number;
    /** Connections relaying now, answered OK and ERR since start, and closed without an answer (not the master). */
    open: number; relayed: number; errors: number; refused: number;
  };
  /** By service name, then replica index. */
  replicas: ReplicaRowView[];
}
