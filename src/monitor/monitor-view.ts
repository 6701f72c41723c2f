// Pure mappings from the worker's records (protobuf-shaped, SQLite rows) to the monitor's JSON.
// Nothing secret crosses here: env values, credentials and keys have no field to land in.
import type { ExecSessionRow } from '../worker/store/worker-store.js';
import { outcomeKindToJSON, taskStateToJSON, type ResourceReport, type TaskOutcome, type TaskProgress, type TaskSpec, type TaskState, type TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { ContributionPoint, TaskEventRecord, TaskRecord } from '../worker/contracts.js';
import type { ContributionView, LimitsView, OutcomeKindName, OutcomeView, SampleView, TaskDetailView, TaskProgressView, TaskRowState, TaskRowView, TunnelView } from './monitor-types.js';

/** TASK_STATE_RUNNING -> 'running'. */
export function stateName(state: TaskState): TaskRowState {
  return taskStateToJSON(state).replace(/^TASK_STATE_/, '').toLowerCase() as TaskRowState;
}

export function limitsView(spec: TaskSpec | undefined): LimitsView {
  const l = spec?.limits;
  return { cpus: l?.cpus ?? 0, memoryBytes: l?.memoryBytes ?? 0, pids: l?.pids ?? 0, gpus: l?.gpus ?? 0, timeoutMs: l?.timeoutMs ?? 0 };
}

export function outcomeView(o: TaskOutcome | undefined): OutcomeView | null {
  if (!o) return null;
  return {
    kind: outcomeKindToJSON(o.kind).replace(/^OUTCOME_KIND_/, '').toLowerCase() as OutcomeKindName,
    exitCode: o.exitCode,
    message: o.message,
    durationMs: o.durationMs,
    resultSize: o.resultSize,
    resultSha256: o.resultSha256,
  };
}

export function taskProgressView(p: TaskProgress | undefined): TaskProgressView | null {
  if (!p) return null;
  return { fraction: p.fraction ?? null, message: p.message, metrics: Object.fromEntries(p.metrics), atMs: p.atMs, updates: p.updates, rejected: p.rejected };
}

export function taskRowView(r: TaskRecord): TaskRowView {
  return {
    taskId: r.taskId,
    attempt: r.attempt,
    image: r.assignment.spec?.image ?? '',
    command: r.assignment.spec?.command ?? [],
    state: stateName(r.state),
    outcome: outcomeView(r.outcome),
    createdAtMs: r.createdAt,
    finishedAtMs: r.finishedAt ?? null,
    progress: taskProgressView(r.progress),
  };
}

export function taskDetailView(r: TaskRecord, events: TaskEventRecord[], logTail: string, execs: ExecSessionRow[] = []): TaskDetailView {
  return {
    ...taskRowView(r),
    limits: limitsView(r.assignment.spec),
    env: [...(r.assignment.spec?.env.keys() ?? [])].sort(),
    events: events.map((e) => ({ state: stateName(e.state), message: e.message, atMs: e.at })),
    logTail,
    execSessions: execs.map((e) => ({ startedAtMs: e.startedAt, command: e.command, tty: e.tty, endedAtMs: e.endedAt ?? null, exitCode: e.exitCode ?? null, error: e.error })),
  };
}

export function sampleView(r: ResourceReport): SampleView {
  return {
    atMs: r.atMs,
    cpuPercent: r.cpuPercent,
    memoryUsedBytes: r.memoryUsedBytes,
    memoryTotalBytes: r.memoryTotalBytes,
    diskUsedBytes: r.diskUsedBytes,
    diskTotalBytes: r.diskTotalBytes,
    netRxBytesPerSec: r.netRxBytesPerSec,
    netTxBytesPerSec: r.netTxBytesPerSec,
    gpus: (r.gpus ?? []).map((g) => ({
      index: g.index,
      utilizationPercent: g.utilizationPercent,
      memoryUsedBytes: g.memoryUsedBytes,
      memoryTotalBytes: g.memoryTotalBytes,
      temperatureC: g.temperatureC,
      powerW: g.powerW,
    })),
  };
}

export function tunnelView(t: TunnelStatus, nowMs: number): TunnelView {
  return {
    interface: t.interface,
    address: t.address,
    masterEndpoint: t.masterEndpoint,
    implementation: t.implementation,
    state: t.state,
    latestHandshakeMs: t.latestHandshakeMs,
    handshakeAgeMs: t.latestHandshakeMs > 0 ? Math.max(0, nowMs - t.latestHandshakeMs) : null,
    rxBytes: t.rxBytes,
    txBytes: t.txBytes,
  };
}

export function contributionView(p: ContributionPoint): ContributionView {
  return {
    atMs: p.atMs,
    intervalMs: p.intervalMs,
    score: p.score,
    multiplier: p.multiplier,
    cpuPercent: p.cpuPercent,
    memoryPercent: p.memoryPercent,
    gpuPercent: p.gpuPercent,
  };
}
