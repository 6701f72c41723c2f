// HiveMind worker monitor page. Plain JS modules under a strict CSP: no inline code, no innerHTML
// with data (task commands and logs are untrusted), DOM built with createElement/textContent.
// Everything live comes over Socket.IO (docs/monitor.md); the API is used for first loads.
// This module renders the node's status and controls and wires the parts together: the charts,
// the running tasks, the live log, the services, the data cache and the history.
import { $, el, fmtBytes, fmtDuration, fmtPct, getJson, postControl, setBadge, toast } from './monitor-dom.js';
import { addContribution, addSample, initCharts, redrawAll } from './monitor-charts.js';
import { loadHistory, onTask } from './monitor-history.js';
import { createLiveLog } from './monitor-log.js';
import { createRunningTasks } from './monitor-running.js';
import { loadCache, renderCache } from './monitor-cache.js';
import { createServices } from './monitor-services.js';

/** POSTs a control; the answer's status is rendered, a failure shown in the toast. */
async function control(url) {
  try {
    const body = await postControl(url);
    if (body.status) renderStatus(body.status);
    return body;
  } catch (err) {
    toast(`Failed: ${err.message}`);
    return undefined;
  }
}

// ------------------------------------------------------------------ status
let status = null;
function renderStatus(s) {
  status = s;
  const n = s.node;
  $('node-name').textContent = n.name ? `· ${n.name}` : '';
  $('node-state').textContent = n.state;
  $('node-state').className = `badge ${n.state === 'connected' ? 'good' : n.state === 'reconnecting' || n.state === 'draining' ? 'warn' : ''}`;
  $('node-id').textContent = n.id || '(not registered yet)';
  $('node-master').textContent = n.masterAddress;
  $('node-version').textContent = n.version;
  $('node-egress').textContent = n.egress ? 'egress offered: tasks asking --network egress reach the internet only' : 'no egress: tasks have no network';
  $('node-uptime').textContent = fmtDuration(n.uptimeMs);
  setBadge($('node-accepting'), n.paused ? 'paused' : n.accepting ? 'accepting' : 'not accepting', n.paused ? 'warn' : n.accepting ? 'good' : 'bad');
  const toggle = $('pause-toggle');
  toggle.textContent = n.paused ? 'Resume' : 'Pause';
  toggle.disabled = !n.paused && !n.accepting;
  $('node-docker').textContent = s.docker.ok ? `ok${s.docker.version ? ` (Docker ${s.docker.version})` : ''}` : `not usable: ${s.docker.message || 'unknown'}`;
  const t = s.tunnel;
  $('node-tunnel').textContent = t
    ? `${t.address} on ${t.interface} (${t.implementation}), ${t.state}, handshake ${t.handshakeAgeMs === null ? 'never' : `${Math.round(t.handshakeAgeMs / 1000)} s ago`}, in ${fmtBytes(t.rxBytes)} / out ${fmtBytes(t.txBytes)}, master ${t.masterEndpoint}`
    : 'no tunnel (direct connection)';
  $('node-capacity').textContent = `${s.free.taskSlots}/${s.budget.maxTasks} slots free, ${s.free.cpus.toFixed(1)}/${s.budget.cpus} CPUs, ${fmtBytes(s.free.memoryBytes)} of ${fmtBytes(s.budget.memoryBytes)} memory${s.budget.gpus ? `, ${s.budget.gpus} GPUs` : ''}`;
  $('node-isolation').textContent = (n.isolations || ['runc']).join(', ');
  $('node-engine').textContent = `${n.engine || 'docker'}${n.unenforcedLimits?.length ? `: cannot enforce ${n.unenforcedLimits.join(', ')} limits (tasks setting them go elsewhere)` : ''}`;
  const problems = $('problems');
  problems.replaceChildren(...n.problems.map((p) => el('div', { text: p })));
  problems.hidden = n.problems.length === 0;
  if (s.contribution) renderContributionSummary(s.contribution.last, s.contribution.total);
  running.render(s.running);
}

function renderContributionSummary(last, total) {
  $('contribution-total').textContent = Number(total).toFixed(1);
  $('contribution-last').textContent = last ? `${last.score.toFixed(2)} (CPU ${fmtPct(last.cpuPercent)}, memory ${fmtPct(last.memoryPercent)}${last.gpuPercent ? `, GPU ${fmtPct(last.gpuPercent)}` : ''})` : '–';
  $('contribution-multiplier').textContent = last ? `× ${last.multiplier}` : '–';
}

// ------------------------------------------------------------------ controls
$('pause-toggle').addEventListener('click', () => {
  if (!status) return;
  const resume = status.node.paused;
  if (!confirm(resume ? 'Resume taking new tasks?' : 'Pause: stop taking new tasks? Running tasks go on.')) return;
  void control(resume ? '/api/resume' : '/api/pause');
});

// ------------------------------------------------------------------ start
initCharts();
const socket = io({ transports: ['websocket', 'polling'] });
const liveLog = createLiveLog(socket);
const running = createRunningTasks({ openLog: liveLog.open, control, onGone: liveLog.taskGone });
const services = createServices({
  openLog: (taskId) => {
    liveLog.open(taskId);
    $('log-panel').scrollIntoView({ block: 'nearest' });
  },
});
setInterval(() => {
  running.tick();
  if (status) $('node-uptime').textContent = fmtDuration(Date.now() - status.node.startedAtMs);
}, 1000);
socket.on('connect', () => {
  setBadge($('connection'), 'live', 'good');
  liveLog.refollow();
});
socket.on('disconnect', () => setBadge($('connection'), 'disconnected', 'bad'));
socket.on('connect_error', (err) => {
  setBadge($('connection'), 'disconnected', 'bad');
  toast(`Live updates: ${err.message}`);
});
socket.on('status', renderStatus);
socket.on('sample', (s) => addSample(s, true));
socket.on('contribution', (p) => {
  addContribution(p, true);
  renderContributionSummary(p, p.total);
});
socket.on('task', onTask);
socket.on('log', liveLog.onLog);
socket.on('cache', renderCache);
socket.on('services', services.render);

(async () => {
  try {
    const [res, contrib] = await Promise.all([getJson('/api/resources'), getJson('/api/contributions')]);
    for (const s of res.samples) addSample(s, false);
    for (const p of contrib.points) addContribution(p, false);
    redrawAll();
  } catch (err) {
    toast(`Charts: ${err.message}`);
  }
})();
void loadHistory();
void loadCache();
void services.load();
getJson('/api/status').then(renderStatus, (err) => toast(`Status: ${err.message}`));
