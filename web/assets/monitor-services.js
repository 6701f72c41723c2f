// The Services panel: the service replicas on this node with their state, health, restarts, last
// exit and traffic through the gateway pipe, and a Logs button opening the replica's live log.
// Fed by GET /api/services on load and the `services` push (docs/monitor.md).
import { $, el, fmtBytes, fmtTime, getJson, toast } from './monitor-dom.js';

const STATE_BADGE = { running: 'good', starting: 'warn', restarting: 'bad' };

/** Requests per second as the pipe sees them: one connection per request (see docs/monitor.md). */
const fmtRps = (r) => (r.requestsPerSecond === null ? '–' : r.requestsPerSecond < 10 ? r.requestsPerSecond.toFixed(1) : r.requestsPerSecond.toFixed(0));

function health(r) {
  if (r.state !== 'running') return el('span', { class: 'muted', text: '–' });
  return el('span', { class: `badge ${r.healthy ? 'good' : 'bad'}`, 'data-testid': 'replica-health', text: r.healthy ? 'healthy' : 'unhealthy', title: r.healthMessage || undefined });
}

function lastExit(r) {
  if (!r.lastExit) return 'never stopped';
  const restart = r.restartAtMs ? `; restarts at ${new Date(r.restartAtMs).toLocaleTimeString()}` : '';
  return `${r.lastExit} (${fmtTime(r.lastExitAtMs)})${restart}`;
}

function replicaRow(r, openLog) {
  return el(
    'tr',
    { 'data-testid': 'replica-row', 'data-task': r.taskId },
    el('td', { text: r.service }),
    el('td', { text: String(r.index) }),
    el('td', { class: 'mono', text: r.attempt > 1 ? `${r.taskId} #${r.attempt}` : r.taskId }),
    el('td', {}, el('span', { class: `badge ${STATE_BADGE[r.state] || ''}`, 'data-testid': 'replica-state', text: r.state })),
    el('td', {}, health(r), r.healthMessage ? el('div', { class: 'muted small', 'data-testid': 'replica-health-message', text: r.healthMessage }) : null),
    el('td', { 'data-testid': 'replica-restarts', text: String(r.restarts) }),
    el('td', { 'data-testid': 'replica-last-exit', text: lastExit(r) }),
    el('td', { 'data-testid': 'replica-rps', text: fmtRps(r), title: `${r.pipe.connections} connections, ${r.pipe.open} open; ${fmtBytes(r.pipe.bytesIn)} in, ${fmtBytes(r.pipe.bytesOut)} out` }),
    el('td', { 'data-testid': 'replica-traffic', text: `${fmtBytes(r.pipe.bytesIn)} in / ${fmtBytes(r.pipe.bytesOut)} out` }),
    el('td', {}, el('button', { type: 'button', 'data-testid': 'replica-logs', text: 'Logs', onclick: () => openLog(r.taskId) })),
  );
}

/** `openLog(taskId)` opens the live log panel (the running tasks' one). */
export function createServices({ openLog }) {
  function render(v) {
    const g = v.gateway;
    $('services-gateway').textContent = g
      ? `listening on port ${g.port}: ${g.relayed} connections relayed, ${g.open} open, ${g.errors} answered with an error, ${g.refused} refused (not the master)`
      : 'this node hosts no services (no gateway pipe)';
    $('services-empty').hidden = v.replicas.length > 0;
    $('services-table').hidden = v.replicas.length === 0;
    $('services-rows').replaceChildren(...v.replicas.map((r) => replicaRow(r, openLog)));
    $('services').dataset.loaded = '1';
  }
  async function load() {
    try {
      render(await getJson('/api/services'));
    } catch (err) {
      toast(`Services: ${err.message}`);
    }
  }
  return { render, load };
}
