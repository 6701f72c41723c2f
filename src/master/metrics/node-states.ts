// A node's state as the master's metrics count it, decided from what the master knows: its
// presence (registry) and its latest report's lifecycle state and accepting flag.
import type { ResourceReport } from '../../protocol/gen/hivemind/v1/common.js';

export const NODE_STATES = ['online', 'offline', 'draining', 'paused'] as const;
export type NodeState = (typeof NODE_STATES)[number];
export type NodeStateCounts = Record<NodeState, number>;

/** What a node's latest report said of itself (absent: no report since the master started). */
export interface ReportedState {
  lifecycle: string;
  accepting: boolean;
}

/**
 * Offline wins (a silent node's last report is stale); then a draining lifecycle; then an online
 * node that does not take tasks is paused. A node back after a master restart with no report yet
 * counts as online.
 */
export function nodeState(online: boolean, reported: ReportedState | undefined): NodeState {
  if (!online) return 'offline';
  if (!reported) return 'online';
  if (reported.lifecycle === 'draining') return 'draining';
  return reported.accepting ? 'online' : 'paused';
}

/**
 * The latest reported state of each node, fed from the report path, and the counts over the
 * nodes the store lists. Holds one small entry per node that reported since the master started.
 */
export class NodeStateBoard {
  private readonly reported = new Map<string, ReportedState>();

  onReport(nodeId: string, r: Pick<ResourceReport, 'lifecycleState' | 'accepting'>): void {
    this.reported.set(nodeId, { lifecycle: r.lifecycleState, accepting: r.accepting });
  }

  /**
   * The counts over `total` nodes (the store's, not removed), of which `onlineIds` are online: those
   * are classed by their latest report, the rest are offline. Costs a walk of the online nodes in
   * memory, not a read of every node from the store (that was 25-35 ms a scrape at 10,000 nodes).
   */
  counts(total: number, onlineIds: Iterable<string>): NodeStateCounts {
    const c: NodeStateCounts = { online: 0, offline: 0, draining: 0, paused: 0 };
    let online = 0;
    for (const id of onlineIds) {
      c[nodeState(true, this.reported.get(id))]++;
      online++;
    }
    // The registry drops a removed node's presence as the store removes it: online never exceeds total.
    c.offline = Math.max(0, total - online);
    return c;
  }
}
