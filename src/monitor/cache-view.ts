// The data cache as the monitor shows it: a pure mapping from the cache's counters and entries
// (read through the worker's narrow read-only view) to the page's JSON, with the list bounded so a
// cache of thousands of small entries cannot make every push large.
import type { CacheEntry, CacheStats } from '../worker/contracts.js';
import type { CacheEntryView, CacheView } from './monitor-types.js';

/** Entries the page gets (most recently used first); the totals cover all of them. */
export const MAX_CACHE_ENTRIES_SHOWN = 200;

export function hitRate(hits: number, misses: number): number | null {
  return hits + misses > 0 ? hits / (hits + misses) : null;
}

export function cacheView(stats: CacheStats, entries: readonly CacheEntry[], limit = MAX_CACHE_ENTRIES_SHOWN): CacheView {
  const sum = (pick: (e: CacheEntry) => boolean) => entries.reduce((s, e) => s + (pick(e) ? e.sizeBytes : 0), 0);
  const shown = [...entries].sort((a, b) => b.lastUsedAt - a.lastUsedAt || a.digest.localeCompare(b.digest)).slice(0, limit);
  return {
    entries: shown.map(
      (e): CacheEntryView => ({
        digest: e.digest,
        kind: e.kind,
        sizeBytes: e.sizeBytes,
        state: e.state,
        pinned: e.pinned,
        inUse: e.leases > 0,
        uses: e.uses,
        lastUsedAtMs: e.lastUsedAt,
      }),
    ),
    entryCount: entries.length,
    bytes: sum(() => true),
    budgetBytes: stats.budgetBytes,
    pinnedBytes: sum((e) => e.pinned),
    inUseBytes: sum((e) => e.leases > 0),
    hits: stats.hits,
    misses: stats.misses,
    hitRate: hitRate(stats.hits, stats.misses),
    evictions: stats.evictions,
    bytesDownloaded: stats.bytesDownloaded,
  };
}
