// The data side of placement, pure: what of a task's data sets a node's cache lacks, whether that
// fits the room the node reported (free plus evictable), how much of it the node holds already
// (the scheduler prefers the node holding most), and the queue reason when no node has room.
import { formatBytes } from '../common/units.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';

/** One data set a task mounts: its digest ("sha256:…") and size (0 for an url of unknown size). */
export interface DataNeed {
  sha256: string;
  size: number;
}

/** A node's data cache as the scheduler sees it. */
export interface NodeCacheView {
  /** Digests of the ready entries the node reported (a Set built once per report). */
  held: ReadonlySet<string>;
  /** Bytes the node can take without failing: free + evictable, less what pending tasks will fetch. */
  room: number;
  /** Digests that tasks assigned but not yet reflected in a report will fetch (already counted in room). */
  coming?: ReadonlySet<string>;
}

/** The task's data sets, each digest once (two mounts of one data set fetch it once). */
export function dataNeedsOf(spec: TaskSpec): DataNeed[] {
  const seen = new Map<string, number>();
  for (const m of spec.data ?? []) seen.set(m.sha256, Math.max(seen.get(m.sha256) ?? 0, m.size));
  return [...seen].map(([sha256, size]) => ({ sha256, size }));
}

/** Bytes of `needs` the node must fetch: those neither held nor already on their way (`coming`). */
export function missingBytes(needs: readonly DataNeed[], held: ReadonlySet<string>, coming?: ReadonlySet<string>): number {
  let n = 0;
  for (const d of needs) if (!held.has(d.sha256) && !coming?.has(d.sha256)) n += d.size;
  return n;
}

/** Bytes of `needs` the node holds already. */
export function heldBytes(needs: readonly DataNeed[], held: ReadonlySet<string>): number {
  let n = 0;
  for (const d of needs) if (held.has(d.sha256)) n += d.size;
  return n;
}

/**
 * Why no node can take the task's data sets, or undefined when one can: no node reports a cache,
 * or none has room for what it lacks (named with the node of the most room, and what it lacks).
 */
export function explainData(needs: readonly DataNeed[], nodes: readonly { label: string; cache?: NodeCacheView | undefined }[]): string | undefined {
  if (needs.length === 0) return undefined;
  let best: { label: string; missing: number; room: number } | undefined;
  for (const n of nodes) {
    if (!n.cache) continue;
    const missing = missingBytes(needs, n.cache.held, n.cache.coming);
    if (missing <= n.cache.room) return undefined;
    if (!best || n.cache.room > best.room) best = { label: n.label, missing, room: n.cache.room };
  }
  if (!best) return 'no node has a data cache (the task mounts data sets)';
  return `no node has room for its data sets (needs ${formatBytes(best.missing)}; the most room is ${formatBytes(Math.max(0, best.room))} on node ${best.label})`;
}
