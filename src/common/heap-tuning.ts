// V8 heap tuning for the long-running processes (worker, master, dev).
//
// Streaming a result allocates one off-heap buffer per 256 KiB chunk and almost nothing on the
// JS heap. With V8's default growing factor the old generation's limit sits only ~16 MB above a
// ~30 MB live heap, which is less than the young generation's capacity, so V8 keeps starting
// incremental marking: measured here, a 512 MiB upload through the tunnel ran 50-60
// mark-compacts in the worker (~25 ms each, a fifth of a core on a 2-core machine) and reached
// 61-70 % of iperf3. Letting the old-generation limit grow to 4x the live heap after each
// mark-compact leaves 2 of them and 78-84 % in the same benchmark.
//
// 4x is right for a small heap and wrong for a large one: a master holding 10,000 nodes' streams
// has ~250 MB live, and 4x let its old generation fill with ~800 MB of promoted garbage (call
// objects of streams that live seconds) before one mark-compact of 400-600 ms took it back; RSS
// passed 1.2 GiB (docs/benchmarks.md, "Where the heap and the stalls come from"). So the room
// given is a fixed amount, HEADROOM_BYTES, as a factor of what the last mark-compact left:
// 4x for a small heap (30 MB live: the streaming case above), down to 1.5x for a large one.
import v8 from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';

/** The most the old generation may grow past its live size, in percent (4x). */
export const MAX_GROWING_PERCENT = 300;
/** The least (1.5x): below it mark-compacts come too often for what they free. */
export const MIN_GROWING_PERCENT = 50;
/** Garbage the old generation may gather between two mark-compacts, when the factor allows. */
export const HEADROOM_BYTES = 128 * 1024 * 1024;

/** The growing percent for a heap that holds `liveBytes` after a mark-compact. */
export function growingPercentFor(liveBytes: number): number {
  if (!(liveBytes > 0)) return MAX_GROWING_PERCENT;
  const percent = Math.round((100 * HEADROOM_BYTES) / liveBytes);
  return Math.min(MAX_GROWING_PERCENT, Math.max(MIN_GROWING_PERCENT, percent));
}

let applied = false;

/**
 * Applies the tuning once per process, and again after every mark-compact from what it left. V8
 * reads the flag each time it sets the next limit, so setting it at run time (rather than on the
 * command line, which the npm bin cannot pass portably) works; a change applies from the next
 * mark-compact on.
 */
export function tuneHeapForStreaming(): void {
  if (applied) return;
  applied = true;
  let current = MAX_GROWING_PERCENT;
  v8.setFlagsFromString(`--heap-growing-percent=${current}`);
  const observer = new PerformanceObserver((list) => {
    if (!list.getEntries().some((e) => ((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) return;
    const next = growingPercentFor(v8.getHeapStatistics().used_heap_size);
    if (next === current) return;
    current = next;
    v8.setFlagsFromString(`--heap-growing-percent=${current}`);
  });
  observer.observe({ entryTypes: ['gc'] });
}
