// Which cached data sets to evict so that a new one fits the cache's disk budget: least recently
// used first, never a pinned entry or one a task holds. A pure decision, tested without a disk.
import { formatBytes as fmt } from '../../common/units.js';

/** What the eviction decision needs to know of one entry. */
export interface EvictionCandidate {
  digest: string;
  sizeBytes: number;
  /** Epoch ms of the last time a task used it (its download, for one never used since). */
  lastUsedAt: number;
  pinned: boolean;
  /** Held by a running or assigned task, or being downloaded. */
  inUse: boolean;
}

export type EvictionPlan =
  | { fits: true; evict: string[]; freedBytes: number }
  | { fits: false; reason: string };

/**
 * Plans room for `needBytes` more under `budgetBytes`, given every entry the cache holds
 * (downloads under way included, with their full size). Evicts the fewest least-recently-used
 * free entries that make it fit; when even evicting all of them would not, evicts nothing and
 * says what holds the space.
 */
export function planEviction(entries: readonly EvictionCandidate[], budgetBytes: number, needBytes: number): EvictionPlan {
  if (needBytes > budgetBytes) {
    return { fits: false, reason: `it is ${fmt(needBytes)}, over the whole cache budget of ${fmt(budgetBytes)} (--cache-max)` };
  }
  const held = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
  let over = held + needBytes - budgetBytes;
  if (over <= 0) return { fits: true, evict: [], freedBytes: 0 };
  const free = entries.filter((e) => !e.pinned && !e.inUse).sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.digest.localeCompare(b.digest));
  const evict: string[] = [];
  let freedBytes = 0;
  for (const e of free) {
    if (over <= 0) break;
    evict.push(e.digest);
    freedBytes += e.sizeBytes;
    over -= e.sizeBytes;
  }
  if (over > 0) {
    const pinned = entries.filter((e) => e.pinned).reduce((s, e) => s + e.sizeBytes, 0);
    const inUse = entries.filter((e) => e.inUse && !e.pinned).reduce((s, e) => s + e.sizeBytes, 0);
    return {
      fits: false,
      reason: `it needs ${fmt(needBytes)} and the cache budget is ${fmt(budgetBytes)}, of which ${fmt(inUse)} is in use by tasks and ${fmt(pinned)} pinned`,
    };
  }
  return { fits: true, evict, freedBytes };
}
