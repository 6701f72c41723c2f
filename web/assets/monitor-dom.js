// The monitor page's small helpers: DOM building (createElement/textContent only: task commands
// and logs are untrusted), number and time formats, the toast and the JSON calls to the API.
export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
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

export const fmtBytes = (n) => {
  if (!Number.isFinite(n)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  // 460 MiB, 12.5 MiB, 1.0 GiB: three significant figures are plenty on a status page.
  return `${i === 0 ? n : n.toFixed(Math.abs(n) >= 100 ? 0 : 1)} ${u[i]}`;
};
export const fmtDuration = (ms) => {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
};
export const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '–');
export const fmtPct = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} %` : '–');

export const toast = (msg) => {
  const t = $('toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 6000);
};

export function setBadge(node, text, kind) {
  node.textContent = text;
  node.className = `badge ${kind || ''}`;
}

export async function getJson(url) {
  const res = await fetch(url, { credentials: 'same-origin' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

/** POSTs a control (pause, resume, cancel) with the header the monitor requires of controls. */
export async function postControl(url) {
  const res = await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'X-Hivemind-Monitor': '1', 'Content-Type': 'application/json' }, body: '{}' });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}
