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

  counts(nodeIds: Iterable<string>, isOnline: (nodeId: string) => boolean): NodeStateCounts {
    const c: NodeStateCounts = { online: 0, offline: 0, draining: 0, paused: 0 };
    for (const id of nodeIds) c[nodeState(isOnline(id), this.reported.get(id))]++;
    return c;
  }
}
