// The master's records as the code sees them (NodeRow, TaskRow, ...) and their mapping to and from
// SQLite rows: the one place that knows the column names and JSON encodings.
import { stringifyProto } from '../protocol/proto-json.js';
import {
  NodeFacts,
  ReplicaStatus,
  ResourceReport,
  TaskOutcome,
  TaskProgress,
  TaskSpec,
  TaskState,
} from '../protocol/gen/hivemind/v1/common.js';

export interface NodeRow {
  id: string;
  name: string;
  facts: NodeFacts;
  credentialHash: string;
  registeredAt: number;
  lastSeen: number;
  lastReport: ResourceReport | undefined;
  /** WireGuard public key, for nodes that enrolled through the tunnel. */
  wgPublicKey: string | null;
  /** Stable tunnel address (no prefix), for nodes that enrolled through the tunnel. */
  tunnelIp: string | null;
}

export interface TaskRow {
  id: string;
  spec: TaskSpec;
  state: TaskState;
  /** 1-based; bumped each time the task is requeued after being lost (see master.ts). */
  attempt: number;
  maxAttempts: number;
  /** The node holding the current attempt; kept after a terminal state for history. */
  nodeId: string | null;
  queueReason: string;
  outcome: TaskOutcome | undefined;
  inputSize: number;
  inputSha256: string;
  /** Set once the result archive of the current attempt is stored and verified. */
  result: { size: number; sha256: string } | undefined;
  cancelRequested: boolean;
  cancelReason: string;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** Highest TaskUpdate.seq applied for the current attempt. */
  lastUpdateSeq: number;
  /** Nodes that rejected this task; the scheduler never offers it to them again. */
  excludedNodes: string[];
  /** A service replica's latest status from its node (TaskUpdate.replica), for the current attempt. */
  replicaStatus?: ReplicaStatus | undefined;
  /** The task's own latest progress report (TaskUpdate.progress, docs/progress.md), for the current attempt; kept once it ended. */
  progress?: TaskProgress | undefined;
}

/** The placement fields of a task row: enough to reconcile a node's list against. */
export type TaskPlacement = Pick<TaskRow, 'id' | 'nodeId' | 'attempt' | 'state'>;

export interface TaskEventRow {
  state: TaskState;
  at: number;
  nodeId: string | null;
  attempt: number;
  message: string;
}

export interface EnrollmentTokenRow {
  hash: string;
  expiresAt: number;
  usesLeft: number;
  createdAt: number;
  revoked: boolean;
}

export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.TASK_STATE_SUCCEEDED,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_CANCELLED,
]);

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.has(state);
}

export interface RawNode {
  id: string; name: string; facts: string; credential_hash: string;
  registered_at: number; last_seen: number; last_report: string | null;
  wg_public_key: string | null; tunnel_ip: string | null;
}

export interface RawTask {
  id: string; spec: string; state: number; attempt: number; max_attempts: number; node_id: string | null;
  queue_reason: string; outcome: string | null; input_size: number; input_sha256: string;
  result_size: number | null; result_sha256: string | null; cancel_requested: number; cancel_reason: string;
  created_at: number; updated_at: number; started_at: number | null; finished_at: number | null;
  last_update_seq: number; excluded_nodes: string; replica_status?: string | null; progress?: string | null;
}

export function nodeFromRaw(r: RawNode): NodeRow {
  return {
    id: r.id,
    name: r.name,
    facts: NodeFacts.fromJSON(JSON.parse(r.facts)),
    credentialHash: r.credential_hash,
    registeredAt: r.registered_at,
    lastSeen: r.last_seen,
    lastReport: r.last_report ? ResourceReport.fromJSON(JSON.parse(r.last_report)) : undefined,
    wgPublicKey: r.wg_public_key,
    tunnelIp: r.tunnel_ip,
  };
}

export function taskFromRaw(r: RawTask): TaskRow {
  return {
    id: r.id,
    spec: TaskSpec.fromJSON(JSON.parse(r.spec)),
    state: r.state as TaskState,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    nodeId: r.node_id,
    queueReason: r.queue_reason,
    outcome: r.outcome ? TaskOutcome.fromJSON(JSON.parse(r.outcome)) : undefined,
    inputSize: r.input_size,
    inputSha256: r.input_sha256,
    result: r.result_size !== null && r.result_sha256 !== null ? { size: r.result_size, sha256: r.result_sha256 } : undefined,
    cancelRequested: r.cancel_requested !== 0,
    cancelReason: r.cancel_reason,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    lastUpdateSeq: r.last_update_seq,
    excludedNodes: JSON.parse(r.excluded_nodes) as string[],
    replicaStatus: r.replica_status ? ReplicaStatus.fromJSON(JSON.parse(r.replica_status)) : undefined,
    progress: r.progress ? TaskProgress.fromJSON(JSON.parse(r.progress)) : undefined,
  };
}

export function taskToParams(t: TaskRow): Record<string, unknown> {
  return {
    id: t.id,
    spec: stringifyProto(t.spec),
    created_at: t.createdAt,
    // The replica a task is, as columns: the service manager looks replicas up by them.
    service: t.spec.service?.service ?? null,
    replica: t.spec.service ? t.spec.service.replica : null,
    ...taskChangeParams(t),
  };
}

/**
 * The columns a task's life changes, with its id: what a save writes. The spec (and the columns
 * derived from it) and the creation time never change once inserted, so a task update does not
 * serialize and rewrite them.
 */
export function taskChangeParams(t: TaskRow): Record<string, unknown> {
  return {
    id: t.id,
    state: t.state,
    attempt: t.attempt,
    max_attempts: t.maxAttempts,
    node_id: t.nodeId,
    queue_reason: t.queueReason,
    outcome: t.outcome ? JSON.stringify(TaskOutcome.toJSON(t.outcome)) : null,
    input_size: t.inputSize,
    input_sha256: t.inputSha256,
    result_size: t.result?.size ?? null,
    result_sha256: t.result?.sha256 ?? null,
    cancel_requested: t.cancelRequested ? 1 : 0,
    cancel_reason: t.cancelReason,
    updated_at: t.updatedAt,
    started_at: t.startedAt,
    finished_at: t.finishedAt,
    last_update_seq: t.lastUpdateSeq,
    excluded_nodes: JSON.stringify(t.excludedNodes),
    replica_status: t.replicaStatus ? JSON.stringify(ReplicaStatus.toJSON(t.replicaStatus)) : null,
    progress: t.progress ? stringifyProto(t.progress) : null,
  };
}

/** The columns set once, at insert (see taskChangeParams). */
export const TASK_INSERT_ONLY_COLUMNS: readonly string[] = ['id', 'spec', 'created_at', 'service', 'replica'];

export const TASK_COLUMNS = [
  'id', 'spec', 'state', 'attempt', 'max_attempts', 'node_id', 'queue_reason', 'outcome', 'input_size',
  'input_sha256', 'result_size', 'result_sha256', 'cancel_requested', 'cancel_reason', 'created_at', 'updated_at',
  'started_at', 'finished_at', 'last_update_seq', 'excluded_nodes', 'service', 'replica', 'replica_status', 'progress',
];

export interface RawToken {
  hash: string;
  expires_at: number;
  uses_left: number;
  created_at: number;
  revoked: number;
}

export function tokenFromRaw(r: RawToken): EnrollmentTokenRow {
  return { hash: r.hash, expiresAt: r.expires_at, usesLeft: r.uses_left, createdAt: r.created_at, revoked: r.revoked !== 0 };
}
