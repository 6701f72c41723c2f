// An event loop's delay as the master reports it (its own loop and each RPC thread's): p50, p99
// and max in seconds since the previous reading, which starts the next window.
import type { Histogram } from 'node:perf_hooks';

export interface LoopLag {
  p50: number;
  p99: number;
  max: number;
}

/** Reads `h` (a monitorEventLoopDelay histogram, in ns) and resets it; an empty window reads 0. */
export function takeLoopLag(h: Histogram): LoopLag {
  const s = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
  const lag = { p50: s(h.percentile(50)), p99: s(h.percentile(99)), max: s(h.max) };
  h.reset();
  return lag;
}
