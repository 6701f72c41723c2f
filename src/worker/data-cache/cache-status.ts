// What a node tells its master about its data cache in each report (DataCacheStatus): the data
// sets it holds ready, so that the master prefers it for tasks that mount them, and its room, so
// that the master never places a task whose data cannot fit. Pure.
import type { DataCacheStatus } from '../../protocol/gen/hivemind/v1/common.js';
import { formatDigest } from '../../protocol/data-rules.js';
import { MAX_CACHE_ENTRIES_REPORTED } from '../../protocol/node-limits.js';
import type { CacheEntry } from './cache-index.js';

/** Held entries listed in one report: the bound the master reads them under. */
export const MAX_REPORTED_HELD = MAX_CACHE_ENTRIES_REPORTED;

/** `entries` most recently used first (CacheIndex.list order). */
export function cacheStatus(entries: readonly CacheEntry[], budgetBytes: number): DataCacheStatus {
  const ready = entries.filter((e) => e.state === 'ready');
  const used = entries.reduce((s, e) => s + e.sizeBytes, 0);
  return {
    held: ready.slice(0, MAX_REPORTED_HELD).map((e) => ({ sha256: formatDigest(e.digest), size: e.sizeBytes })),
    budgetBytes,
    freeBytes: Math.max(0, budgetBytes - used),
    evictableBytes: ready.filter((e) => !e.pinned && e.leases === 0).reduce((s, e) => s + e.sizeBytes, 0),
  };
}
