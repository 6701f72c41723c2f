// Prometheus metrics of the node's data cache, read from the cache's own counters at each scrape
// (the cache counts; the monitor does not keep a second copy that could drift). They are registered
// only on a node with a data cache: zeros elsewhere would look like an empty cache.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CacheStats, DataCacheView } from '../worker/contracts.js';

type Pick = (s: CacheStats) => number;

const GAUGES: readonly [string, string, Pick][] = [
  ['hivemind_data_cache_bytes', 'Bytes of data sets in the node cache (ready and downloading)', (s) => s.bytes],
  ['hivemind_data_cache_entries', 'Data sets in the node cache', (s) => s.entries],
  ['hivemind_data_cache_budget_bytes', 'The data cache budget (--cache-max)', (s) => s.budgetBytes],
];

// Counters mirror the cache's totals since the worker started (a restart resets them, which
// Prometheus' rate() and increase() handle as a counter reset).
const COUNTERS: readonly [string, string, Pick][] = [
  ['hivemind_data_cache_hits_total', 'Data sets handed to a task from the cache without a download', (s) => s.hits],
  ['hivemind_data_cache_misses_total', 'Data sets a task had to wait for a download of', (s) => s.misses],
  ['hivemind_data_cache_evictions_total', 'Cache entries evicted (least recently used) to make room', (s) => s.evictions],
  ['hivemind_data_downloaded_bytes_total', 'Data set bytes the node downloaded into its cache', (s) => s.bytesDownloaded],
];

export function registerDataCacheMetrics(registry: Registry, cache: DataCacheView): void {
  const registers = [registry];
  // One read of the cache per scrape: the registry calls every collect() in the same tick, so the
  // snapshot is dropped at the next microtask and the following scrape reads afresh.
  let snapshot: CacheStats | undefined;
  const stats = (): CacheStats => {
    if (!snapshot) {
      snapshot = cache.stats();
      queueMicrotask(() => (snapshot = undefined));
    }
    return snapshot;
  };
  for (const [name, help, pick] of GAUGES) new Gauge({ name, help, registers, collect() { this.set(pick(stats())); } });
  for (const [name, help, pick] of COUNTERS) {
    new Counter({ name, help, registers, collect() { this.reset(); this.inc(Math.max(0, pick(stats()))); } });
  }
}
