// Prometheus metrics of the node's data cache, read from the cache's own counters at each scrape
// (the cache counts; the monitor does not keep a second copy that could drift). They are registered
// only on a node with a data cache: zeros elsewhere would look like an empty cache.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CacheStats, DataCacheView } from '../worker/contracts.js';

export function registerDataCacheMetrics(registry: Registry, cache: DataCacheView): void {
  const registers = [registry];
  const gauge = (name: string, help: string, pick: (s: CacheStats) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(pick(cache.stats()));
      },
    });
  // Counters mirror the cache's totals since the worker started (a restart resets them, which
  // Prometheus' rate() and increase() handle as a counter reset).
  const counter = (name: string, help: string, pick: (s: CacheStats) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(Math.max(0, pick(cache.stats())));
      },
    });
  gauge('hivemind_data_cache_bytes', 'Bytes of data sets in the node cache (ready and downloading)', (s) => s.bytes);
  gauge('hivemind_data_cache_entries', 'Data sets in the node cache', (s) => s.entries);
  gauge('hivemind_data_cache_budget_bytes', 'The data cache budget (--cache-max)', (s) => s.budgetBytes);
  counter('hivemind_data_cache_hits_total', 'Data sets handed to a task from the cache without a download', (s) => s.hits);
  counter('hivemind_data_cache_misses_total', 'Data sets a task had to wait for a download of', (s) => s.misses);
  counter('hivemind_data_cache_evictions_total', 'Cache entries evicted (least recently used) to make room', (s) => s.evictions);
  counter('hivemind_data_downloaded_bytes_total', 'Data set bytes the node downloaded into its cache', (s) => s.bytesDownloaded);
}
