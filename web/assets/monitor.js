// HiveMind worker monitor page. Plain JS under a strict CSP: no inline code, no innerHTML with
// data (task commands and logs are untrusted), DOM built with createElement/textContent.
// Everything live comes over Socket.IO (docs/monitor.md); the API is used for first loads.
'use strict';
(() => {
  const HOUR = 3600_000;
  const KEEP_MS = 24 * HOUR; // chart points kept in the page
  const LOG_MAX_LINES = 2000;
  const LOG_MAX_CHARS = 256 * 1024;
  const HISTORY_PAGE = 50;

  // ------------------------------------------------------------------ helpers
  const $ = (id) => document.getElementById(id);
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'title') e.title = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const fmtBytes = (n) => {
    if (!Number.isFinite(n)) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`;
  };
  const fmtDuration = (ms) => {
    if (!Number.isFinite(ms) || ms < 0) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${(ms / 1000).toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  };
  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '–');
  const fmtPct = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} %` : '–');
  const toast = (msg) => {
    const t = $('toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.hidden = true), 6000);
  };
  function setBadge(node, text, kind) {
    node.textContent = text;
    node.className = `badge ${kind || ''}`;
  }

  async function getJson(url) {
    const res = await fetch(url, { credentials: 'same-origin' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
    return body;
  }
  async function control(url) {
    try {
      const res = await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'X-Hivemind-Monitor': '1', 'Content-Type': 'application/json' }, body: '{}' });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
      if (body.status) renderStatus(body.status);
      return body;
    } catch (err) {
      toast(`Failed: ${err.message}`);
      return undefined;
    }
  }

  // ------------------------------------------------------------------ charts (uPlot)
  const charts = new Map(); // id -> { plot, data, series }
  function makeChart(containerId, title, series, fmt) {
    const box = $(containerId);
    box.replaceChildren(el('div', { class: 'chart-title', text: title }));
    const data = [[], ...series.map(() => [])];
    const width = Math.max(280, box.clientWidth || 320);
    const plot = new uPlot(
      {
        width,
        height: 160,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [{}, { values: (_u, ticks) => ticks.map(fmt), size: 84 }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, value: (_u, v) => (v == null ? '–' : fmt(v)) }))],
      },
      data,
      box,
    );
    const c = { plot, data, box };
    charts.set(containerId, c);
    return c;
  }
  function pushPoint(c, atMs, values) {
    c.data[0].push(atMs / 1000);
    values.forEach((v, i) => c.data[i + 1].push(v));
    const cutoff = (Date.now() - KEEP_MS) / 1000;
    while (c.data[0].length && c.data[0][0] < cutoff) for (const col of c.data) col.shift();
  }
  function redraw(c) {
    c.plot.setData(c.data);
  }
  window.addEventListener('resize', () => {
    for (const c of charts.values()) c.plot.setSize({ width: Math.max(280, c.box.clientWidth), height: 160 });
  });

  const pct = (v) => `${Number(v).toFixed(0)} %`;
  const bytes = (v) => fmtBytes(Number(v));
  const rate = (v) => `${fmtBytes(Number(v))}/s`;
  let cpuChart, memChart, diskChart, netChart, contribChart;
  const gpuCharts = new Map(); // index -> { util, mem, temp, power }

  function initCharts() {
    cpuChart = makeChart('chart-cpu', 'CPU', [{ label: 'CPU', color: '#2456c7' }], pct);
    memChart = makeChart('chart-memory', 'Memory', [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes);
    diskChart = makeChart('chart-disk', 'Disk (data dir)', [{ label: 'used', color: '#a05a00' }, { label: 'total', color: '#b9bfcc' }], bytes);
    netChart = makeChart('chart-network', 'Network', [{ label: 'in', color: '#1f7a4d' }, { label: 'out', color: '#d12771' }], rate);
    contribChart = makeChart('chart-contribution', 'Score per interval', [{ label: 'score', color: '#1f7a4d' }], (v) => Number(v).toFixed(1));
  }

  function gpuChartsFor(index) {
    let g = gpuCharts.get(index);
    if (g) return g;
    const ids = ['util', 'mem', 'temp', 'power'].map((k) => `chart-gpu${index}-${k}`);
    for (const id of ids) $('gpu-charts').append(el('div', { class: 'chart', id, 'data-testid': id }));
    g = {
      util: makeChart(ids[0], `GPU ${index} utilisation`, [{ label: 'util', color: '#2456c7' }], pct),
      mem: makeChart(ids[1], `GPU ${index} VRAM`, [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes),
      temp: makeChart(ids[2], `GPU ${index} temperature`, [{ label: '°C', color: '#b3261e' }], (v) => `${Number(v).toFixed(0)} °C`),
      power: makeChart(ids[3], `GPU ${index} power`, [{ label: 'W', color: '#a05a00' }], (v) => `${Number(v).toFixed(0)} W`),
    };
    gpuCharts.set(index, g);
    return g;
  }

  function addSample(s, draw) {
    pushPoint(cpuChart, s.atMs, [s.cpuPercent]);
    pushPoint(memChart, s.atMs, [s.memoryUsedBytes, s.memoryTotalBytes]);
    pushPoint(diskChart, s.atMs, [s.diskUsedBytes, s.diskTotalBytes]);
    pushPoint(netChart, s.atMs, [s.netRxBytesPerSec, s.netTxBytesPerSec]);
    for (const g of s.gpus || []) {
      const c = gpuChartsFor(g.index);
      pushPoint(c.util, s.atMs, [g.utilizationPercent]);
      pushPoint(c.mem, s.atMs, [g.memoryUsedBytes, g.memoryTotalBytes]);
      pushPoint(c.temp, s.atMs, [g.temperatureC]);
      pushPoint(c.power, s.atMs, [g.powerW]);
    }
    if (draw) for (const c of charts.values()) redraw(c);
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
    const problems = $('problems');
    problems.replaceChildren(...n.problems.map((p) => el('div', { text: p })));
    problems.hidden = n.problems.length === 0;
    if (s.contribution) renderContributionSummary(s.contribution.last, s.contribution.total);
    renderRunning(s.running);
  }

  function renderContributionSummary(last, total) {
    $('contribution-total').textContent = Number(total).toFixed(1);
    $('contribution-last').textContent = last ? `${last.score.toFixed(2)} (CPU ${fmtPct(last.cpuPercent)}, memory ${fmtPct(last.memoryPercent)}${last.gpuPercent ? `, GPU ${fmtPct(last.gpuPercent)}` : ''})` : '–';
    $('contribution-multiplier').textContent = last ? `× ${last.multiplier}` : '–';
  }

  // ------------------------------------------------------------------ running tasks
  const runningRows = new Map(); // taskId -> { root, parts }
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
  function runningRow(t) {
    const state = el('span', { class: 'badge' });
    const elapsed = el('span');
    const timeoutBar = el('progress', { max: 1, value: 0, hidden: true });
    const usage = el('span');
    const pull = progressPart('image pull');
    const upload = progressPart('result upload');
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
      pull.root,
      upload.root,
    );
    return { root, state, elapsed, timeoutBar, usage, pull, upload, limits, task: t };
  }
  function updateRunningRow(r, t) {
    r.task = t;
    r.state.textContent = t.state;
    const l = t.limits;
    r.limits.textContent = [
      l.cpus ? `${l.cpus} CPU` : 'default CPU',
      l.memoryBytes ? fmtBytes(l.memoryBytes) : 'default memory',
      l.pids ? `${l.pids} pids` : null,
      l.gpus ? `${l.gpus} GPU` : null,
      l.timeoutMs ? `timeout ${fmtDuration(l.timeoutMs)}` : 'no timeout',
    ].filter(Boolean).join(', ');
    r.usage.textContent = t.usage ? `${t.usage.cpuPercent.toFixed(0)} % CPU, ${fmtBytes(t.usage.memoryBytes)}` : '–';
    setProgress(r.pull, t.state === 'pulling' ? t.pull : null);
    setProgress(r.upload, t.state === 'uploading' ? t.upload : null);
    tickElapsed(r);
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
  function renderRunning(list) {
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
      if (log.taskId === id) log.finished = true;
    }
    $('running-empty').hidden = runningRows.size > 0;
  }
  setInterval(() => {
    for (const r of runningRows.values()) tickElapsed(r);
    if (status) $('node-uptime').textContent = fmtDuration(Date.now() - status.node.startedAtMs);
  }, 1000);

  // ------------------------------------------------------------------ live log
  const log = { taskId: null, chunks: [], chars: 0, pending: [], skipped: 0, frame: 0, finished: false };
  function openLog(taskId) {
    if (log.taskId && log.taskId !== taskId) socket.emit('unfollow', { taskId: log.taskId });
    Object.assign(log, { taskId, chunks: [], chars: 0, pending: [], skipped: 0, finished: false });
    $('log-task').textContent = taskId;
    $('log-skipped').textContent = '';
    $('log-view').textContent = '';
    $('log-panel').hidden = false;
    socket.emit('follow', { taskId });
  }
  function closeLog() {
    if (log.taskId) socket.emit('unfollow', { taskId: log.taskId });
    log.taskId = null;
    $('log-panel').hidden = true;
  }
  $('log-close').addEventListener('click', closeLog);
  function onLog(push) {
    if (push.taskId !== log.taskId) return;
    log.pending.push(push.text);
    log.skipped += push.dropped || 0;
    if (!log.frame) log.frame = requestAnimationFrame(flushLog);
  }
  // One DOM update per animation frame, whatever the rate of pushes; the view keeps a bounded tail.
  function flushLog() {
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

  // ------------------------------------------------------------------ history
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
  async function loadHistory() {
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
  function onTask(t) {
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
        el('ol', { class: 'events small' }, ...task.events.map((e) => el('li', { text: `${fmtTime(e.atMs)} ${e.state}${e.message ? `: ${e.message}` : ''}` }))),
        el('pre', { class: 'log', text: logText || '(no output)' }),
      );
      box.hidden = false;
    } catch (err) {
      toast(`Task ${taskId}: ${err.message}`);
    }
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
  socket.on('connect', () => {
    setBadge($('connection'), 'live', 'good');
    if (log.taskId) socket.emit('follow', { taskId: log.taskId });
  });
  socket.on('disconnect', () => setBadge($('connection'), 'disconnected', 'bad'));
  socket.on('connect_error', (err) => {
    setBadge($('connection'), 'disconnected', 'bad');
    toast(`Live updates: ${err.message}`);
  });
  socket.on('status', renderStatus);
  socket.on('sample', (s) => addSample(s, true));
  socket.on('contribution', (p) => {
    pushPoint(contribChart, p.atMs, [p.score]);
    redraw(contribChart);
    renderContributionSummary(p, p.total);
  });
  socket.on('task', onTask);
  socket.on('log', onLog);

  (async () => {
    try {
      const [res, contrib] = await Promise.all([getJson('/api/resources'), getJson('/api/contributions')]);
      for (const s of res.samples) addSample(s, false);
      for (const p of contrib.points) pushPoint(contribChart, p.atMs, [p.score]);
      for (const c of charts.values()) redraw(c);
    } catch (err) {
      toast(`Charts: ${err.message}`);
    }
  })();
  void loadHistory();
  getJson('/api/status').then(renderStatus, (err) => toast(`Status: ${err.message}`));
})();
