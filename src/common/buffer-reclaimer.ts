// Keeps the worker's memory flat while it streams gigabytes. Every chunk that passes through a
// stream is a fresh Buffer; they die young, but V8 frees the memory behind them only when it
// scavenges its young generation, which holds nothing but their tiny wrappers and so fills
// slowly: dead chunks pile up to ~80 MiB before anyone frees them (measured here on a 256 MiB
// result). A minor GC every few MiB streamed keeps that under ~20 MiB for no measurable time.
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' }) => void;

let gc: GcFunction | null | undefined;

function scavenger(): GcFunction | null {
  if (gc === undefined) {
    try {
      // Exposing gc() only adds a global function to a new context; it changes no GC behaviour.
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as GcFunction;
    } catch {
      gc = null;
    }
  }
  return gc;
}

export const DEFAULT_RECLAIM_EVERY_BYTES = 2 * 1024 * 1024;

/**
 * For the bulk result stream, on both ends: a scavenge every 2 MiB cost a third of the worker's
 * CPU there; every 16 MiB keeps RSS growth near 50 MiB for a 1 GiB result.
 */
export const BULK_RECLAIM_EVERY_BYTES = 16 * 1024 * 1024;

/** Counts streamed bytes and triggers a young-generation GC every `everyBytes`. */
export class BufferReclaimer {
  private pending = 0;

  constructor(readonly everyBytes = DEFAULT_RECLAIM_EVERY_BYTES) {}

  add(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.everyBytes) return;
    this.pending = 0;
    scavenger()?.({ type: 'minor' });
  }
}
