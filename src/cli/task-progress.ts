// A task's own progress report (docs/progress.md) as the CLI shows it: a bar, a percentage, the
// task's message and its metrics. The message and metric names come from the task, through a node:
// what reaches the terminal goes through terminalSafe.
import type { TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { TaskState, type TaskProgress } from '../protocol/gen/hivemind/v1/common.js';
import { progressBar } from './status-line.js';
import { terminalSafe } from './terminal-text.js';

/** A metric's value, short: six significant digits, no trailing zeros. */
export function formatMetric(v: number): string {
  return Number.isInteger(v) && Math.abs(v) < 1e15 ? String(v) : String(Number(v.toPrecision(6)));
}

/** `[########............]  42%  epoch 3/10  loss=0.31`; without a fraction, the message and metrics alone. */
export function describeProgress(p: TaskProgress, barWidth = 20): string {
  const parts: string[] = [];
  if (p.fraction !== undefined) parts.push(progressBar(p.fraction, barWidth));
  if (p.message) parts.push(p.message);
  const metrics = [...p.metrics].map(([k, v]) => `${k}=${formatMetric(v)}`).join(' ');
  if (metrics) parts.push(metrics);
  if (parts.length === 0) parts.push('no valid progress line yet');
  return terminalSafe(parts.join('  '));
}

/** `get`'s line: the report, and how many of the task's progress lines were refused, if any. */
export function describeProgressDetail(p: TaskProgress): string {
  const refused = p.rejected > 0 ? `  (${p.rejected} of ${p.updates} progress lines refused: docs/progress.md)` : '';
  return `${describeProgress(p)}${refused}`;
}

/** The PROGRESS column of `tasks`: the percentage, or "-" without one. */
export function progressCell(t: TaskInfo): string {
  const f = t.progress?.fraction;
  return f === undefined ? '-' : `${Math.floor(Math.min(1, Math.max(0, f)) * 100)}%`;
}

/** `wait`'s live line while the task runs: its state, then its progress when it gave any. */
export function liveTaskLine(t: TaskInfo, stateName: (s: TaskState) => string): string {
  const state = terminalSafe(`${t.taskId} ${stateName(t.state)}`);
  if (t.state !== TaskState.TASK_STATE_RUNNING || !t.progress) return state;
  return `${state}  ${describeProgress(t.progress)}`;
}
