// The monitor's data cache parts without I/O: the panel's view (totals, hit rate, bounded list),
// the "fetching data" progress of a running task, and the cache's Prometheus metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheView, hitRate, MAX_CACHE_ENTRIES_SHOWN } from '../../src/monitor/cache-view.js';
import { LiveTasks } from '../../src/monitor/live-tasks.js';
import { MonitorMetrics } from '../../src/monitor/monitor-metrics.js';
import { TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { TaskUpdate } from '../../src/protocol/gen/hivemind/v1/node.js';
import type { CacheEntry, CacheStats, DataCacheView } from '../../src/worker/contracts.js';
import type { TaskRecord } from '../../src/worker/store/worker-store.js';

const hex = (i: number) => i.toString(16).padStart(64, '0');
const entry = (i: number, over: Partial<CacheEntry> = {}): CacheEntry => ({
  digest: hex(i),
  kind: 'file',
  sizeBytes: 1000 * i,
  state: 'ready',
  pinned: false,
  createdAt: 1,
  lastUsedAt: 1000 + i,
  uses: 1,
  leases: 0,
  ...over,
});
const stats = (over: Partial<CacheStats> = {}): CacheStats => ({ hits: 0, misses: 0, evictions: 0, bytesDownloaded: 0, entries: 0, bytes: 0, budgetBytes: 1 << 30, ...over });

test('cache view: totals, pinned and in-use bytes, hit rate, entries most recently used first', () => {
  const entries = [entry(1, { pinned: true }), entry(2, { leases: 2 }), entry(3, { kind: 'dir', state: 'downloading', lastUsedAt: 500 })];
  const v = cacheView(stats({ hits: 3, misses: 1, evictions: 2, bytesDownloaded: 4000 }), entries);
  assert.equal(v.entryCount, 3);
  assert.equal(v.bytes, 6000);
  assert.equal(v.pinnedBytes, 1000);
  assert.equal(v.inUseBytes, 2000);
  assert.equal(v.hitRate, 0.75);
  assert.deepEqual([v.evictions, v.bytesDownloaded, v.budgetBytes], [2, 4000, 1 << 30]);
  assert.deepEqual(v.entries.map((e) => e.digest), [hex(2), hex(1), hex(3)]);
  assert.deepEqual(v.entries[0], { digest: hex(2), kind: 'file', sizeBytes: 2000, state: 'ready', pinned: false, inUse: true, uses: 1, lastUsedAtMs: 1002 });
  assert.equal(v.entries[2]!.state, 'downloading');
});

test('cache view: no hit rate before the first use; the list is bounded, the totals are not', () => {
  assert.equal(hitRate(0, 0), null);
  assert.equal(hitRate(0, 4), 0);
  const many = Array.from({ length: MAX_CACHE_ENTRIES_SHOWN + 50 }, (_, i) => entry(i + 1, { sizeBytes: 1 }));
  const v = cacheView(stats(), many);
  assert.equal(v.hitRate, null);
  assert.equal(v.entries.length, MAX_CACHE_ENTRIES_SHOWN);
  assert.equal(v.entryCount, MAX_CACHE_ENTRIES_SHOWN + 50);
  assert.equal(v.bytes, MAX_CACHE_ENTRIES_SHOWN + 50);
  assert.equal(v.entries[0]!.digest, hex(MAX_CACHE_ENTRIES_SHOWN + 50), 'the most recently used are the ones shown');
});

function record(taskId: string, state: TaskState): TaskRecord {
  return { taskId, attempt: 1, assignment: { taskId, attempt: 1, spec: { image: 'img', command: ['true'] } }, state, createdAt: 10 } as unknown as TaskRecord;
}

test('running tasks: data fetch progress shows while accepted (from the event and the update), and goes once the task pulls', () => {
  const live = new LiveTasks((id) => record(id, TaskState.TASK_STATE_ACCEPTED));
  live.onUpdate(TaskUpdate.fromPartial({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, atMs: 11 }));
  assert.equal(live.list()[0]!.data, null);
  assert.equal(live.onDataProgress({ taskId: 't1', attempt: 1, receivedBytes: 460 * 2 ** 20, totalBytes: 2 ** 30 }), true);
  assert.deepEqual(live.list()[0]!.data, { currentBytes: 460 * 2 ** 20, totalBytes: 2 ** 30 });
  assert.equal(live.onDataProgress({ taskId: 'other', attempt: 1, receivedBytes: 1, totalBytes: 2 }), false, 'an unknown task is ignored');
  live.onUpdate(TaskUpdate.fromPartial({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, atMs: 12, data: { receivedBytes: 900, totalBytes: 1000 } }));
  assert.deepEqual(live.list()[0]!.data, { currentBytes: 900, totalBytes: 1000 });
  live.onUpdate(TaskUpdate.fromPartial({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_PULLING, atMs: 13 }));
  assert.equal(live.list()[0]!.data, null);
  assert.equal(live.onDataProgress({ taskId: 't1', attempt: 1, receivedBytes: 1000, totalBytes: 1000 }), false, 'a late event after the pull began is not shown');
  assert.equal(live.list()[0]!.data, null);
});

function fakeCache(s: CacheStats, reads = { n: 0 }): DataCacheView {
  return {
    stats: () => {
      reads.n++;
      return s;
    },
    list: () => [],
  };
}
const sample = (text: string, name: string) => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

test('metrics: the data cache series read the cache at each scrape', async () => {
  const s = stats({ hits: 5, misses: 2, evictions: 1, bytesDownloaded: 3 * 2 ** 30, entries: 4, bytes: 7 * 2 ** 20, budgetBytes: 50 * 2 ** 30 });
  const reads = { n: 0 };
  const m = new MonitorMetrics(() => 0, () => 0, () => true, fakeCache(s, reads));
  let text = (await m.text()).body;
  assert.equal(reads.n, 1, 'one read of the cache per scrape, not one per series');
  assert.equal(sample(text, 'hivemind_data_cache_bytes'), 7 * 2 ** 20);
  assert.equal(sample(text, 'hivemind_data_cache_entries'), 4);
  assert.equal(sample(text, 'hivemind_data_cache_budget_bytes'), 50 * 2 ** 30);
  assert.equal(sample(text, 'hivemind_data_cache_hits_total'), 5);
  assert.equal(sample(text, 'hivemind_data_cache_misses_total'), 2);
  assert.equal(sample(text, 'hivemind_data_cache_evictions_total'), 1);
  assert.equal(sample(text, 'hivemind_data_downloaded_bytes_total'), 3 * 2 ** 30);
  assert.match(text, /^# TYPE hivemind_data_cache_hits_total counter$/m);
  assert.match(text, /^# TYPE hivemind_data_cache_bytes gauge$/m);
  // A later scrape sees the new counts, not the sum of both scrapes.
  s.hits = 6;
  text = (await m.text()).body;
  assert.equal(sample(text, 'hivemind_data_cache_hits_total'), 6);
  assert.equal(reads.n, 2);
});

test('metrics: a node without a data cache exports no data cache series', async () => {
  const text = (await new MonitorMetrics(() => 0, () => 0, () => true).text()).body;
  assert.doesNotMatch(text, /hivemind_data_/);
});
