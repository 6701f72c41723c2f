// The data cache panel: the node's cached data sets (models, corpora) with their size, last use,
// uses, pinned and in-use marks, and the totals, budget and hit rate. Fed by GET /api/cache on
// load and the `cache` push after every task change and report (docs/monitor.md).
import { $, el, fmtBytes, fmtTime, getJson, toast } from './monitor-dom.js';

/** sha256:0123456789ab… : enough to tell entries apart and to find one with `worker cache ls`. */
export const shortDigest = (hex) => `sha256:${hex.slice(0, 12)}…`;

const fmtRate = (c) => (c.hitRate === null ? 'no use yet' : `${(c.hitRate * 100).toFixed(0)} % (${c.hits} ${c.hits === 1 ? 'hit' : 'hits'}, ${c.misses} ${c.misses === 1 ? 'miss' : 'misses'})`);

function entryRow(e) {
  const marks = [e.pinned ? 'pinned' : null, e.inUse ? 'in use' : null, e.state === 'downloading' ? 'downloading' : null].filter(Boolean);
  return el(
    'tr',
    { 'data-testid': 'cache-entry', 'data-digest': e.digest },
    el('td', { class: 'mono', text: shortDigest(e.digest), title: `sha256:${e.digest}` }),
    el('td', { text: e.kind === 'dir' ? 'directory' : 'file' }),
    el('td', { text: fmtBytes(e.sizeBytes) }),
    el('td', { text: e.uses ? fmtTime(e.lastUsedAtMs) : 'never' }),
    el('td', { text: String(e.uses) }),
    el('td', { 'data-testid': 'cache-entry-marks', text: marks.join(', ') || '–' }),
  );
}

export function renderCache(c) {
  const panel = $('cache');
  $('cache-none').hidden = c !== null;
  $('cache-body').hidden = c === null;
  if (c === null) return;
  const pct = c.budgetBytes ? ` (${((c.bytes / c.budgetBytes) * 100).toFixed(0)} %)` : '';
  $('cache-totals').textContent = `${c.entryCount} ${c.entryCount === 1 ? 'data set' : 'data sets'}, ${fmtBytes(c.bytes)} of ${fmtBytes(c.budgetBytes)}${pct}; pinned ${fmtBytes(c.pinnedBytes)}, in use ${fmtBytes(c.inUseBytes)}`;
  $('cache-hit-rate').textContent = fmtRate(c);
  $('cache-activity').textContent = `${fmtBytes(c.bytesDownloaded)} downloaded, ${c.evictions} ${c.evictions === 1 ? 'eviction' : 'evictions'} since the worker started`;
  $('cache-entries').replaceChildren(...c.entries.map(entryRow));
  $('cache-more').hidden = c.entryCount <= c.entries.length;
  $('cache-more').textContent = `${c.entryCount - c.entries.length} less recently used not shown: \`hivemind worker cache ls\` lists them all`;
  $('cache-empty').hidden = c.entryCount > 0;
  panel.dataset.loaded = '1';
}

export async function loadCache() {
  try {
    renderCache((await getJson('/api/cache')).cache);
  } catch (err) {
    toast(`Data cache: ${err.message}`);
  }
}
