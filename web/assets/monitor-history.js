// The task history: pages of finished tasks from the API (the first page follows live changes),
// a state filter, and a task's details with its stored log on a click.
import { $, el, fmtBytes, fmtDuration, fmtTime, getJson, toast } from './monitor-dom.js';
import { taskProgressText } from './monitor-running.js';

const HISTORY_PAGE = 50;

const history = { filter: '', before: null, next: null, stack: [], rows: new Map() };
function historyRow(t) {
  const o = t.outcome;
  const state = el('span', { 'data-testid': 'history-state', class: `state-${t.state}`, text: t.state });
  return el(
    'tr',
    { 'data-testid': 'history-row', 'data-task-id': t.taskId, onclick: () => void showDetail(t.taskId) },
    el('td', { text: fmtTime(t.finishedAtMs) }),
    el('td', { class: 'mono', text: t.attempt > 1 ? `${t.taskId} #${t.attempt}` : t.taskId }),
    el('td', { class: 'mono', text: t.image }),
    el('td', {}, state),
    el('td', { text: o ? `${o.kind}${o.kind === 'exited' || o.exitCode ? ` (exit ${o.exitCode})` : ''}` : '–', title: o ? o.message : undefined }),
    el('td', { text: o ? fmtDuration(o.durationMs) : '–' }),
    el('td', { class: 'mono', text: o && o.resultSize ? `${fmtBytes(o.resultSize)} ${o.resultSha256.slice(0, 12)}…` : '–', title: o && o.resultSha256 ? `sha256 ${o.resultSha256}` : undefined }),
  );
}
export async function loadHistory() {
  const q = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  if (history.filter) q.set('state', history.filter);
  if (history.before) q.set('before', history.before);
  try {
    const page = await getJson(`/api/tasks?${q}`);
    history.next = page.nextBefore;
    history.rows = new Map(page.tasks.map((t) => [t.taskId, t]));
    $('history').replaceChildren(...page.tasks.map(historyRow));
    $('history-older').disabled = !page.nextBefore;
    $('history-newer').disabled = history.stack.length === 0;
    $('history-page').textContent = `page ${history.stack.length + 1}${page.tasks.length ? '' : ' (empty)'}`;
  } catch (err) {
    toast(`History: ${err.message}`);
  }
}
const matchesFilter = (t) =>
  !history.filter || (history.filter === 'running' ? ['accepted', 'pulling', 'running', 'uploading'].includes(t.state) : t.state === history.filter);
/** A task changed (Socket.IO 'task'). */
export function onTask(t) {
  if (history.stack.length > 0) return; // only the first page follows live changes
  const body = $('history');
  const existing = body.querySelector(`tr[data-task-id="${CSS.escape(t.taskId)}"]`);
  if (!matchesFilter(t)) {
    if (existing) existing.remove();
    return;
  }
  const row = historyRow(t);
  if (existing) existing.replaceWith(row);
  else body.prepend(row);
  history.rows.set(t.taskId, t);
  while (body.children.length > HISTORY_PAGE) body.lastElementChild.remove();
  $('history-page').textContent = 'page 1';
}
$('history-filter').addEventListener('change', (e) => {
  history.filter = e.target.value;
  history.before = null;
  history.stack = [];
  void loadHistory();
});
$('history-older').addEventListener('click', () => {
  if (!history.next) return;
  history.stack.push(history.before);
  history.before = history.next;
  void loadHistory();
});
$('history-newer').addEventListener('click', () => {
  if (!history.stack.length) return;
  history.before = history.stack.pop();
  void loadHistory();
});

/** One exec session: when, the command (with -t when it had a terminal), and how it ended. */
function execLine(e) {
  const end = e.endedAtMs === null ? 'running' : `exit ${e.exitCode}${e.error ? ` (${e.error})` : ''} at ${fmtTime(e.endedAtMs)}`;
  return el('li', { class: 'mono', text: `${fmtTime(e.startedAtMs)} exec${e.tty ? ' -t' : ''} ${e.command.join(' ')}: ${end}` });
}

async function showDetail(taskId) {
  const box = $('detail');
  try {
    const [{ task }, logText] = await Promise.all([
      getJson(`/api/tasks/${encodeURIComponent(taskId)}`),
      fetch(`/api/tasks/${encodeURIComponent(taskId)}/logs`, { credentials: 'same-origin' }).then((r) => (r.ok ? r.text() : '')),
    ]);
    const l = task.limits;
    box.replaceChildren(
      el('h3', { class: 'mono', text: `${task.taskId} (attempt ${task.attempt}): ${task.state}` }),
      el('div', { class: 'mono small', text: `${task.image} ${task.command.join(' ')}` }),
      el('div', { class: 'small', text: `limits: ${l.cpus || 'default'} CPU, ${l.memoryBytes ? fmtBytes(l.memoryBytes) : 'default'} memory, ${l.pids || 'default'} pids, ${l.gpus} GPUs, timeout ${l.timeoutMs ? fmtDuration(l.timeoutMs) : 'none'}` }),
      el('div', { class: 'small', text: `env: ${task.env.length ? task.env.join(', ') : 'none'}` }),
      task.outcome ? el('div', { class: 'small', text: `outcome: ${task.outcome.kind}, exit ${task.outcome.exitCode}, ${task.outcome.message}; result ${fmtBytes(task.outcome.resultSize)} sha256 ${task.outcome.resultSha256 || '–'}` }) : null,
      task.progress ? el('div', { class: 'small', 'data-testid': 'history-progress', text: `last progress: ${taskProgressText(task.progress)}` }) : null,
      el('ol', { class: 'events small' }, ...task.events.map((e) => el('li', { text: `${fmtTime(e.atMs)} ${e.state}${e.message ? `: ${e.message}` : ''}` }))),
      task.execSessions.length ? el('div', { class: 'small', text: 'exec sessions:' }) : null,
      task.execSessions.length ? el('ol', { class: 'events small exec-sessions' }, ...task.execSessions.map(execLine)) : null,
      el('pre', { class: 'log', text: logText || '(no output)' }),
    );
    box.hidden = false;
  } catch (err) {
    toast(`Task ${taskId}: ${err.message}`);
  }
}
