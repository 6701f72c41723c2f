// Human-readable rendering of tasks and nodes for the CLI (the --json output: json-output.ts).
// Every string from the master (names, images, messages, reasons) may come from a hostile node or
// client: it is passed through terminalSafe before it reaches the operator's terminal.
import { DataKind, OutcomeKind, TaskNetwork, TaskState, type DataMount, type DataProgress, type Isolation, type NodeFacts, type TaskOutcome } from '../protocol/gen/hivemind/v1/common.js';
import { isolationName } from '../protocol/isolation-rules.js';
import { engineShown, limitName } from '../protocol/limit-rules.js';
import type { NodeInfo, TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { formatBytes, formatDuration } from '../common/units.js';
import { terminalSafe } from './terminal-text.js';
import { describeProgressDetail, progressCell } from './task-progress.js';

export function stateName(s: TaskState): string {
  return (TaskState[s] ?? String(s)).replace(/^TASK_STATE_/, '').toLowerCase();
}

export function outcomeName(k: OutcomeKind): string {
  return (OutcomeKind[k] ?? String(k)).replace(/^OUTCOME_KIND_/, '').toLowerCase();
}

export function describeOutcome(o: TaskOutcome | undefined): string {
  if (!o || o.kind === OutcomeKind.OUTCOME_KIND_UNSPECIFIED) return '';
  const parts = [outcomeName(o.kind)];
  if (o.kind === OutcomeKind.OUTCOME_KIND_EXITED || o.kind === OutcomeKind.OUTCOME_KIND_OOM_KILLED) parts.push(`exit ${o.exitCode}`);
  if (o.durationMs) parts.push(formatDuration(o.durationMs));
  if (o.resultSize) parts.push(`result ${formatBytes(o.resultSize)}`);
  if (o.message) parts.push(o.message);
  return terminalSafe(parts.join(', '));
}

/** "45% (460 MiB of 1.0 GiB)"; a total of 0 (sizes unknown yet) shows the bytes only. */
export function describeDataProgress(p: DataProgress): string {
  if (p.totalBytes <= 0) return `${formatBytes(p.receivedBytes)} so far`;
  return `${percentOf(p)} (${formatBytes(p.receivedBytes)} of ${formatBytes(p.totalBytes)})`;
}

function percentOf(p: DataProgress): string {
  return `${Math.min(100, Math.floor((p.receivedBytes / p.totalBytes) * 100))}%`;
}

/** One mount of the spec: "sha256:… at /models (1.0 GiB, dir)" or "… from URL". */
export function describeDataMount(m: DataMount): string {
  const kind = m.kind === DataKind.DATA_KIND_DIR ? 'directory' : m.kind === DataKind.DATA_KIND_FILE ? 'file' : '';
  const size = m.size > 0 ? formatBytes(m.size) : m.url ? 'size unknown' : '';
  const facts = [size, kind].filter(Boolean).join(', ');
  return `${m.path}  ${m.sha256}${facts ? ` (${facts})` : ''}${m.url ? ` from ${m.url}` : ''}`;
}

/** The last column of `tasks`: the queue reason, the data fetch, or the outcome. */
function statusNote(t: TaskInfo): string {
  if (t.state === TaskState.TASK_STATE_QUEUED) return t.queueReason;
  if (t.state === TaskState.TASK_STATE_ACCEPTED && t.dataProgress) {
    const p = t.dataProgress;
    return `fetching data ${p.totalBytes > 0 ? percentOf(p) : formatBytes(p.receivedBytes)}`;
  }
  return describeOutcome(t.outcome);
}

/** Columns padded to their widest cell; every cell made terminal-safe. */
export function table(unsafeRows: string[][]): string {
  const rows = unsafeRows.map((r) => r.map((c) => terminalSafe(c)));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  // trimEnd: an empty last cell leaves no trailing blanks
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function formatTaskTable(tasks: TaskInfo[]): string {
  if (tasks.length === 0) return 'no tasks';
  const rows = [['TASK', 'STATE', 'IMAGE', 'NODE', 'ATTEMPT', 'PROGRESS', 'OUTCOME / REASON']];
  for (const t of tasks) {
    rows.push([
      t.taskId,
      stateName(t.state),
      t.spec?.image ?? '',
      t.nodeId ? t.nodeId.slice(0, 12) : '-',
      String(t.attempt),
      progressCell(t),
      statusNote(t),
    ]);
  }
  return table(rows);
}

export function formatTask(t: TaskInfo): string {
  const lines = [
    `task      ${t.taskId}`,
    `state     ${stateName(t.state)}${t.cancelRequested ? ' (cancel requested)' : ''}`,
    `image     ${t.spec?.image ?? ''}`,
    `command   ${JSON.stringify(t.spec?.command ?? [])}`,
    `node      ${t.nodeId || '-'}`,
    `attempt   ${t.attempt}/${t.maxAttempts}`,
  ];
  if (t.spec?.isolation) lines.push(`isolation ${isolationName(t.spec.isolation)}`);
  for (const m of t.spec?.data ?? []) lines.push(`data      ${describeDataMount(m)}`);
  if (t.spec?.network === TaskNetwork.TASK_NETWORK_EGRESS) {
    const o = t.outcome;
    lines.push(`network   egress${o?.netRxBytes !== undefined ? `: in ${formatBytes(o.netRxBytes)}, out ${formatBytes(o.netTxBytes ?? 0)}` : ''}`);
  }
  if (t.state === TaskState.TASK_STATE_QUEUED && t.queueReason) lines.push(`waiting   ${t.queueReason}`);
  if (t.state === TaskState.TASK_STATE_ACCEPTED && t.dataProgress) lines.push(`fetching data: ${describeDataProgress(t.dataProgress)}`);
  if (t.progress) lines.push(`progress  ${describeProgressDetail(t.progress)}`);
  const o = describeOutcome(t.outcome);
  if (o) lines.push(`outcome   ${o}`);
  if (t.outcome?.resultSha256) lines.push(`sha256    ${t.outcome.resultSha256}`);
  for (const e of t.events) {
    lines.push(`  ${new Date(e.atMs).toISOString()}  ${stateName(e.state).padEnd(10)} ${e.nodeId ? e.nodeId.slice(0, 12) : ''} ${e.message}`);
  }
  return lines.map((l) => terminalSafe(l)).join('\n');
}

/** A node's isolations as listed: "runc,gvisor"; a node that says none (older) runs runc only. */
export function offeredIsolations(isolations: readonly Isolation[] | undefined): string {
  return isolations?.length ? isolations.map(isolationName).join(',') : 'runc';
}

/** A node's engine as listed: "docker", "podman", or "podman-rootless!" when some limits are not enforced there. */
export function nodeEngine(facts: Pick<NodeFacts, 'engine' | 'unenforcedLimits'> | undefined): string {
  return `${engineShown(facts?.engine)}${facts?.unenforcedLimits.length ? ` (no ${facts.unenforcedLimits.map(limitName).join('/')} limits)` : ''}`;
}

export function formatNodeTable(nodes: NodeInfo[]): string {
  if (nodes.length === 0) return 'no nodes';
  const rows = [['NODE', 'NAME', 'STATUS', 'CPUS', 'MEMORY', 'GPUS', 'ENGINE', 'ISOLATION', 'EGRESS', 'TASKS', 'LAST SEEN']];
  for (const n of nodes) {
    rows.push([
      n.nodeId,
      n.name,
      n.online ? 'online' : 'offline',
      String(n.facts?.cpuCores ?? 0),
      formatBytes(n.facts?.memoryBytes ?? 0),
      String(n.facts?.gpus.length ?? 0),
      nodeEngine(n.facts),
      offeredIsolations(n.facts?.isolations),
      n.facts?.allowsEgress ? 'yes' : 'no',
      String(n.taskIds.length),
      n.lastSeenMs ? new Date(n.lastSeenMs).toISOString() : '-',
    ]);
  }
  return table(rows);
}
