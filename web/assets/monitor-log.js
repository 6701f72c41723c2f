// The live log panel: follows one task's output over Socket.IO and shows a bounded tail of it,
// with one DOM update per animation frame however fast the pushes come.
import { $, fmtBytes } from './monitor-dom.js';

const LOG_MAX_LINES = 2000;
const LOG_MAX_CHARS = 256 * 1024;

export function createLiveLog(socket) {
  const log = { taskId: null, chunks: [], chars: 0, pending: [], skipped: 0, frame: 0, finished: false };
  function open(taskId) {
    if (log.taskId && log.taskId !== taskId) socket.emit('unfollow', { taskId: log.taskId });
    Object.assign(log, { taskId, chunks: [], chars: 0, pending: [], skipped: 0, finished: false });
    $('log-task').textContent = taskId;
    $('log-skipped').textContent = '';
    $('log-view').textContent = '';
    $('log-panel').hidden = false;
    socket.emit('follow', { taskId });
  }
  function close() {
    if (log.taskId) socket.emit('unfollow', { taskId: log.taskId });
    log.taskId = null;
    $('log-panel').hidden = true;
  }
  $('log-close').addEventListener('click', close);
  function onLog(push) {
    if (push.taskId !== log.taskId) return;
    log.pending.push(push.text);
    log.skipped += push.dropped || 0;
    if (!log.frame) log.frame = requestAnimationFrame(flush);
  }
  // One DOM update per animation frame, whatever the rate of pushes; the view keeps a bounded tail.
  function flush() {
    log.frame = 0;
    if (!log.pending.length) return;
    for (const p of log.pending) {
      log.chunks.push(p);
      log.chars += p.length;
    }
    log.pending = [];
    let text = log.chunks.join('');
    if (text.length > LOG_MAX_CHARS) {
      log.skipped += text.length - LOG_MAX_CHARS;
      text = text.slice(text.length - LOG_MAX_CHARS);
    }
    const lines = text.split('\n');
    if (lines.length > LOG_MAX_LINES + 1) text = lines.slice(lines.length - LOG_MAX_LINES - 1).join('\n');
    log.chunks = [text];
    log.chars = text.length;
    const view = $('log-view');
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 30;
    view.textContent = text;
    if ($('log-follow').checked && atBottom) view.scrollTop = view.scrollHeight;
    $('log-skipped').textContent = log.skipped ? `… ${fmtBytes(log.skipped)} skipped to keep up` : '';
  }
  return {
    open,
    onLog,
    /** After a reconnect: follow the open log again. */
    refollow() {
      if (log.taskId) socket.emit('follow', { taskId: log.taskId });
    },
    /** The task left the running list. */
    taskGone(taskId) {
      if (log.taskId === taskId) log.finished = true;
    },
  };
}
