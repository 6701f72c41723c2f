// V8 heap tuning for the long-running processes (worker, master, dev).
//
// Streaming a result allocates one off-heap buffer per 256 KiB chunk and almost nothing on the
// JS heap. With V8's default growing factor the old generation's limit sits only ~16 MB above a
// ~30 MB live heap, which is less than the young generation's capacity, so V8 keeps starting
// incremental marking: measured here, a 512 MiB upload through the tunnel ran 50-60
// mark-compacts in the worker (~25 ms each, a fifth of a core on a 2-core machine) and reached
// 61-70 % of iperf3. Letting the old-generation limit grow to 4x the live heap after each
// mark-compact leaves 2 of them and 78-84 % in the same benchmark. The live heap stays where it
// was; only garbage that survived the young generation waits longer, and the memory reducer
// still shrinks an idle process.
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 300;

let applied = false;

/**
 * Applies the tuning once per process. The flag is read at every mark-compact, so setting it at
 * start-up (rather than on the command line, which the npm bin cannot pass portably) works.
 */
export function tuneHeapForStreaming(): void {
  if (applied) return;
  applied = true;
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
