// What the monitor needs from a worker node and its store: a narrow view, so that the server can
// be tested against a fake and cannot reach into the worker's internals.
import type { EventEmitter } from 'node:events';
import type { Capacity, Isolation, LimitKind, ResourceReport, TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { ExecCounters } from '../worker/exec-sessions.js';
import type { ExecSessionRow } from '../worker/store/worker-store.js';
import type { ContributionPoint, DataCacheView, GatewayPipeView, ReplicaView, HistoryFilter, HistoryPage, HostFacts, NodeBudget, TaskEventRecord, TaskRecord, WorkerEvents } from '../worker/contracts.js';

export interface MonitoredNode extends EventEmitter<WorkerEvents> {
  readonly nodeId: string | undefined;
  readonly state: string;
  readonly stateReason: string | undefined;
  readonly accepting: boolean;
  readonly isPaused: boolean;
  readonly startedAt: number;
  readonly hostFacts: HostFacts;
  readonly budget: NodeBudget;
  readonly options: { readonly masterAddress: string; readonly name: string | undefined; readonly workerVersion: string; readonly allowsEgress?: boolean; readonly isolations?: readonly Isolation[]; readonly engine?: string; readonly unenforcedLimits?: readonly LimitKind[] };
  /** The master in use or being tried now, when the node knows several; absent: options.masterAddress. */
  readonly masterAddress?: string;
  /** The node's data cache, read only; absent on a node without one (no cache panel data, no cache metrics). */
  readonly dataCache?: DataCacheView | undefined;
  /** The gateway pipe while it listens (port and counters); undefined on a node that hosts no services. */
  readonly gateway: GatewayPipeView | undefined;
  /** Exec sessions started, refused and open now. */
  readonly execCounters: ExecCounters;
  freeCapacity(): Capacity;
  /** The service replicas running here, each with its executor's latest status. */
  replicas(): ReplicaView[];
  runningTasks(): { taskId: string; attempt: number }[];
  pause(): void;
  resume(): void;
  cancelTask(taskId: string): boolean;
  tunnelStatus(): Promise<TunnelStatus | undefined>;
}

export interface MonitorStore {
  historyPage(opts: { filter?: HistoryFilter; limit: number; before?: string }): HistoryPage;
  latestAttempt(taskId: string): TaskRecord | undefined;
  getTask(taskId: string, attempt: number): TaskRecord | undefined;
  taskEvents(taskId: string, attempt: number): TaskEventRecord[];
  execSessions(taskId: string, attempt?: number): ExecSessionRow[];
  samples(sinceMs?: number): ResourceReport[];
  contributions(sinceMs: number): ContributionPoint[];
  contributionTotal(): number;
  lastContribution(): ContributionPoint | undefined;
}

