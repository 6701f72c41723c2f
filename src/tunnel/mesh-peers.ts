// Mesh mode's peer lists as changes (pure): the master pages a node's full list and announces one
// node's arrival or removal to the others as a delta; the node checks every message against
// bounds (a hostile or broken master still cannot make it run unbounded work or route outside
// the tunnel) and turns it into a change of its WireGuard peers.
import type { MeshPeer, MeshPeers } from '../protocol/gen/hivemind/v1/node.js';
import { hostNumber, type Subnet } from './subnet.js';
import { MeshPeersRefusedError } from './tunnel-errors.js';
import { isWgKey } from './wg-keys.js';
import type { WgPeerChange } from './wg-spec.js';

/** Peers (or removed ids) per MeshPeers message: 2,000 × ~120 bytes stays far below the 4 MiB message cap. */
export const MESH_PAGE_PEERS = 2000;
const NODE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
// host:port or [v6]:port, as `wg show` prints endpoints; no spaces or commas (wg's own separators).
const ENDPOINT_RE = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.%A-Za-z]{2,64}\]):\d{1,5}$/;

/** A node's full list: the first message replaces its set, the rest add to it. */
export function meshPeerPages(peers: readonly MeshPeer[], pageSize = MESH_PAGE_PEERS): MeshPeers[] {
  if (peers.length === 0) return [{ peers: [], delta: false, removedNodeIds: [] }];
  const pages: MeshPeers[] = [];
  for (let i = 0; i < peers.length; i += pageSize) pages.push({ peers: peers.slice(i, i + pageSize), delta: i > 0, removedNodeIds: [] });
  return pages;
}

export const meshPeerAdded = (peer: MeshPeer): MeshPeers => ({ peers: [peer], delta: true, removedNodeIds: [] });
export const meshPeerRemoved = (nodeId: string): MeshPeers => ({ peers: [], delta: true, removedNodeIds: [nodeId] });

export interface MeshBounds {
  /** The tunnel subnet: every peer's address must be a host inside it. */
  subnet: Subnet;
  selfNodeId: string;
  selfPublicKey: string;
  selfTunnelIp: string;
  masterPublicKey: string;
  /** Seconds, set on every mesh peer. */
  persistentKeepalive: number;
}

/** What a MeshPeers message means for the interface: a full re-sync, or a change of a few peers. */
export type MeshApply = { kind: 'full' } | { kind: 'change'; change: WgPeerChange };

/** The mesh peers a node holds, changed only by messages that pass every bound. */
export class MeshPeerSet {
  private readonly peers = new Map<string, MeshPeer>();
  private readonly maxPeers: number;

  constructor(private readonly bounds: MeshBounds) {
    // Every host of the subnet but the master's and this node's.
    this.maxPeers = 2 ** (32 - bounds.subnet.prefix) - 4;
  }

  get size(): number {
    return this.peers.size;
  }

  values(): MeshPeer[] {
    return [...this.peers.values()];
  }

  /** Checks the whole message first, then applies it: a refused message changes nothing. */
  apply(msg: MeshPeers): MeshApply {
    if (msg.peers.length > MESH_PAGE_PEERS) throw new MeshPeersRefusedError(`${msg.peers.length} peers in one message, over the limit of ${MESH_PAGE_PEERS}`);
    if (msg.removedNodeIds.length > MESH_PAGE_PEERS) throw new MeshPeersRefusedError(`${msg.removedNodeIds.length} removed node ids in one message, over the limit of ${MESH_PAGE_PEERS}`);
    if (!msg.delta && msg.removedNodeIds.length > 0) throw new MeshPeersRefusedError('a full list with removed node ids');
    const incoming = msg.peers.filter((p) => p.nodeId !== this.bounds.selfNodeId);
    incoming.forEach((p, i) => this.check(p, i));
    for (const id of msg.removedNodeIds) if (!NODE_ID_RE.test(id)) throw new MeshPeersRefusedError(`removed node id ${JSON.stringify(id.slice(0, 80))} is not a node id`);
    const after = msg.delta ? this.sizeAfter(incoming, msg.removedNodeIds) : new Set(incoming.map((p) => p.nodeId)).size;
    if (after > this.maxPeers) throw new MeshPeersRefusedError(`${after} mesh peers, more than tunnel subnet ${this.bounds.subnet.cidr} has hosts (${this.maxPeers})`);

    if (!msg.delta) {
      this.peers.clear();
      for (const p of incoming) this.peers.set(p.nodeId, p);
      return { kind: 'full' };
    }
    const change: WgPeerChange = { set: [], remove: [] };
    for (const id of msg.removedNodeIds) {
      const old = this.peers.get(id);
      if (!old) continue;
      this.peers.delete(id);
      change.remove.push(old.publicKey);
    }
    for (const p of incoming) {
      const old = this.peers.get(p.nodeId);
      if (old && old.publicKey === p.publicKey && old.tunnelAddress === p.tunnelAddress && old.endpoint === p.endpoint) continue;
      // A node that came back with a new key: its old key must not keep the address.
      if (old && old.publicKey !== p.publicKey) change.remove.push(old.publicKey);
      this.peers.set(p.nodeId, p);
      change.set.push(this.wgPeer(p));
    }
    return { kind: 'change', change };
  }

  wgPeer(p: MeshPeer): { publicKey: string; endpoint?: string; allowedIps: string[]; persistentKeepalive: number } {
    return { publicKey: p.publicKey, ...(p.endpoint ? { endpoint: p.endpoint } : {}), allowedIps: [`${p.tunnelAddress}/32`], persistentKeepalive: this.bounds.persistentKeepalive };
  }

  private sizeAfter(incoming: MeshPeer[], removed: string[]): number {
    const gone = new Set(removed.filter((id) => this.peers.has(id)));
    const added = new Set(incoming.filter((p) => !this.peers.has(p.nodeId) || gone.has(p.nodeId)).map((p) => p.nodeId));
    return this.peers.size - gone.size + added.size;
  }

  private check(p: MeshPeer, i: number): void {
    const at = `peer ${i}`;
    if (!NODE_ID_RE.test(p.nodeId)) throw new MeshPeersRefusedError(`${at}: node id ${JSON.stringify(p.nodeId.slice(0, 80))} is not a node id`);
    if (!isWgKey(p.publicKey)) throw new MeshPeersRefusedError(`${at} (node ${p.nodeId}): public key is not a WireGuard key`);
    if (p.publicKey === this.bounds.masterPublicKey || p.publicKey === this.bounds.selfPublicKey) throw new MeshPeersRefusedError(`${at} (node ${p.nodeId}): public key is the master's or this node's own`);
    const n = hostNumber(this.bounds.subnet, p.tunnelAddress);
    if (n === undefined || n < 2 || n > 2 ** (32 - this.bounds.subnet.prefix) - 2 || p.tunnelAddress === this.bounds.selfTunnelIp) {
      throw new MeshPeersRefusedError(`${at} (node ${p.nodeId}): tunnel address ${JSON.stringify(p.tunnelAddress.slice(0, 80))} is not another node's host address inside ${this.bounds.subnet.cidr}`);
    }
    if (p.endpoint !== '' && (p.endpoint.length > 280 || !ENDPOINT_RE.test(p.endpoint))) throw new MeshPeersRefusedError(`${at} (node ${p.nodeId}): endpoint ${JSON.stringify(p.endpoint.slice(0, 80))} is not HOST:PORT`);
  }
}
