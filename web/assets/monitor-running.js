// The running tasks: one row per task with its state, elapsed time against its timeout, usage,
// limits, data fetch, image pull and result upload progress, and its Logs and Cancel buttons.
import { $, el, fmtBytes, fmtDuration } from './monitor-dom.js';

function progressPart(label) {
  const bar = el('progress', { max: 1, value: 0 });
  const text = el('span', { class: 'small muted' });
  const root = el('div', { class: 'bar', hidden: true }, el('span', { class: 'label', text: label }), bar, text);
  return { root, bar, text };
}
function setProgress(part, p) {
  part.root.hidden = !p;
  if (!p) return;
  part.bar.max = Math.max(1, p.totalBytes);
  part.bar.value = Math.min(p.currentBytes, part.bar.max);
  part.text.textContent = `${fmtBytes(p.currentBytes)} of ${p.totalBytes ? fmtBytes(p.totalBytes) : '?'}`;
}
/** "45% (460 MiB of 1.0 GiB)": the data sets coming into the cache before the task can start. */
export function dataProgressText(p) {
  // Rounded, but 100% only once every byte is there.
  const done = p.currentBytes >= p.totalBytes;
  const pct = done ? 100 : Math.min(99, Math.round((p.currentBytes / Math.max(1, p.totalBytes)) * 100));
  return `${pct}% (${fmtBytes(p.currentBytes)} of ${fmtBytes(p.totalBytes)})`;
}
/** The task's own progress (docs/progress.md): a bar when it gave a fraction, its message and metrics. */
export function taskProgressText(p) {
  const parts = [];
  if (p.fraction !== null) parts.push(`${Math.floor(p.fraction * 100)}%`);
  if (p.message) parts.push(p.message);
  const metrics = Object.entries(p.metrics).map(([k, v]) => `${k}=${Number(v.toPrecision(6))}`).join(' ');
  if (metrics) parts.push(metrics);
  return parts.join('  ') || 'no valid progress line yet';
}
function setTaskProgress(part, p) {
  part.root.hidden = !p;
  if (!p) return;
  part.bar.hidden = p.fraction === null;
  part.bar.value = p.fraction ?? 0;
  part.text.textContent = taskProgressText(p);
}
function tickElapsed(r) {
  const t = r.task;
  const since = t.startedAtMs || t.acceptedAtMs;
  const ms = Date.now() - since;
  r.elapsed.textContent = `${fmtDuration(ms)}${t.limits.timeoutMs ? ` of ${fmtDuration(t.limits.timeoutMs)}` : ''}`;
  r.timeoutBar.hidden = !(t.limits.timeoutMs && t.startedAtMs);
  if (!r.timeoutBar.hidden) {
    r.timeoutBar.max = t.limits.timeoutMs;
    r.timeoutBar.value = Math.min(ms, t.limits.timeoutMs);
  }
}
function updateRunningRow(r, t) {
  r.task = t;
  const fetching = t.state === 'accepted' && t.data;
  r.state.textContent = fetching ? 'fetching data' : t.state;
  const l = t.limits;
  r.limits.textContent = [
    l.cpus ? `${l.cpus} CPU` : 'default CPU',
    l.memoryBytes ? fmtBytes(l.memoryBytes) : 'default memory',
    l.pids ? `${l.pids} pids` : null,
    l.gpus ? `${l.gpus} GPU` : null,
    l.timeoutMs ? `timeout ${fmtDuration(l.timeoutMs)}` : 'no timeout',
  ].filter(Boolean).join(', ');
  r.usage.textContent = t.usage ? `${t.usage.cpuPercent.toFixed(0)} % CPU, ${fmtBytes(t.usage.memoryBytes)}` : '–';
  setProgress(r.data, fetching ? t.data : null);
  if (fetching) r.data.text.textContent = dataProgressText(t.data);
  setProgress(r.pull, t.state === 'pulling' ? t.pull : null);
  setProgress(r.upload, t.state === 'uploading' ? t.upload : null);
  setTaskProgress(r.progress, t.state === 'running' ? t.progress : null);
  tickElapsed(r);
}

/** `openLog(taskId)` opens the live log, `control(url)` posts a control, `onGone(taskId)` follows a row's removal. */
export function createRunningTasks({ openLog, control, onGone }) {
  const runningRows = new Map(); // taskId -> { root, parts }
  function runningRow(t) {
    const state = el('span', { class: 'badge' });
    const elapsed = el('span');
    const timeoutBar = el('progress', { max: 1, value: 0, hidden: true });
    const usage = el('span');
    const data = progressPart('fetching data');
    data.root.setAttribute('data-testid', 'data-progress');
    const pull = progressPart('image pull');
    const upload = progressPart('result upload');
    const progress = progressPart('progress');
    progress.root.setAttribute('data-testid', 'task-progress');
    const limits = el('span', { class: 'small' });
    const logBtn = el('button', { type: 'button', text: 'Logs', onclick: () => openLog(t.taskId) });
    const cancelBtn = el('button', {
      type: 'button',
      class: 'danger',
      text: 'Cancel',
      'data-testid': 'cancel-task',
      onclick: () => {
        if (confirm(`Cancel task ${t.taskId}?`)) void control(`/api/tasks/${encodeURIComponent(t.taskId)}/cancel`);
      },
    });
    const root = el(
      'div',
      { class: 'task', 'data-testid': 'running-task', 'data-task-id': t.taskId },
      el('div', { class: 'task-head' },
        el('span', {}, el('strong', { class: 'mono', text: t.taskId }), ' ', state, ' ', el('span', { class: 'mono small', text: `${t.image} ${t.command.join(' ')}`.trim() })),
        el('span', { class: 'task-actions' }, logBtn, cancelBtn)),
      el('div', { class: 'task-grid' },
        el('div', {}, el('div', { class: 'label', text: 'elapsed' }), el('div', { class: 'bar' }, elapsed, timeoutBar)),
        el('div', {}, el('div', { class: 'label', text: 'CPU / memory' }), usage),
        el('div', {}, el('div', { class: 'label', text: 'limits' }), limits)),
      data.root,
      pull.root,
      progress.root,
      upload.root,
    );
    return { root, state, elapsed, timeoutBar, usage, data, pull, upload, progress, limits, task: t };
  }
  function render(list) {
    const box = $('running-tasks');
    const seen = new Set();
    for (const t of list) {
      seen.add(t.taskId);
      let r = runningRows.get(t.taskId);
      if (!r) {
        r = runningRow(t);
        runningRows.set(t.taskId, r);
        box.append(r.root);
      }
      updateRunningRow(r, t);
    }
    for (const [id, r] of runningRows) {
      if (seen.has(id)) continue;
      r.root.remove();
      runningRows.delete(id);
      onGone(id);
    }
    $('running-empty').hidden = runningRows.size > 0;
  }
  return {
    render,
    /** Once a second: the elapsed times move on. */
    tick() {
      for (const r of runningRows.values()) tickElapsed(r);
    },
  };
}
