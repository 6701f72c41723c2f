// Mesh mode on the master: who is told what when a node subscribes or is removed. The subscriber
// gets its full list of the others (paged); every other node gets only the change, so a round of
// N reconnects sends O(N) peers per node instead of N lists of N-1. Nodes that did not say they
// apply deltas (SubscribeRequest.mesh_deltas: older workers) get a full list each time, as before.
import type { MeshPeer, MeshPeers, NodeCommand } from '../protocol/gen/hivemind/v1/node.js';
import { meshPeerAdded, meshPeerPages, meshPeerRemoved } from '../tunnel/mesh-peers.js';

/** Where commands for a subscribed node go (the registry). */
export interface MeshSinks {
  sink(nodeId: string): { send(cmd: NodeCommand): void } | undefined;
}

export class MeshAnnouncer {
  /** Nodes whose current Subscribe said they apply deltas. */
  private readonly deltaNodes = new Set<string>();

  /** `peers`: every enrolled node with the endpoint the hub sees it at (TunnelHub.meshPeers). */
  constructor(private readonly peers: () => Promise<MeshPeer[]>, private readonly sinks: MeshSinks) {}

  /** Node `nodeId` subscribed: its full list to it, its entry to the others. */
  async subscribed(nodeId: string, deltas: boolean): Promise<void> {
    // Recorded before the await: a later removal must already know how to tell this node.
    if (deltas) this.deltaNodes.add(nodeId);
    else this.deltaNodes.delete(nodeId);
    const peers = await this.peers();
    const self = peers.find((p) => p.nodeId === nodeId);
    this.sendFull(nodeId, peers);
    if (!self) return;
    const delta = meshPeerAdded(self);
    for (const p of peers) if (p.nodeId !== nodeId) this.sendChange(p.nodeId, delta, peers);
  }

  /** Node `nodeId` was removed (and is gone from the hub): the others drop it. */
  async removed(nodeId: string): Promise<void> {
    this.deltaNodes.delete(nodeId);
    const peers = (await this.peers()).filter((p) => p.nodeId !== nodeId);
    const delta = meshPeerRemoved(nodeId);
    for (const p of peers) this.sendChange(p.nodeId, delta, peers);
  }

  private sendChange(to: string, delta: MeshPeers, peers: MeshPeer[]): void {
    const sink = this.sinks.sink(to);
    if (!sink) return;
    if (this.deltaNodes.has(to)) sink.send({ command: { $case: 'meshPeers', value: delta } });
    else this.sendFull(to, peers);
  }

  private sendFull(to: string, peers: MeshPeer[]): void {
    const sink = this.sinks.sink(to);
    if (!sink) return;
    const others = peers.filter((p) => p.nodeId !== to);
    // An older node replaces its set with every message: it gets the list whole.
    const pages = this.deltaNodes.has(to) ? meshPeerPages(others) : [{ peers: others, delta: false, removedNodeIds: [] }];
    for (const page of pages) sink.send({ command: { $case: 'meshPeers', value: page } });
  }
}
