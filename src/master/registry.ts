// Live presence of nodes at the master: online while reports arrive, offline once silent for the
// node timeout (3 report intervals by default; judged by an injected clock). Holds each node's command stream and its last
// reported free capacity, minus assignments the node's reports do not reflect yet. That free
// capacity is kept up to date on each change (not recomputed per placement), with an index of the
// nodes that can take a task now, and a listener told whenever a node may have gained room.
import type { Clock } from '../common/clock.js';
import { nodeTimeoutMs } from '../config/defaults.js';
import type { Capacity, DataCacheStatus, Isolation, LimitKind, ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { NodeCommand } from '../protocol/gen/hivemind/v1/node.js';
import { subtractDemand, type NodeFree, type SchedulableNode, type TaskDemand } from './scheduler.js';
import { missingBytes, type NodeCacheView } from './data-placement.js';
import type { NodePipeAddress } from './gateway/gateway-directory.js';

/** Where commands for a node go (its open Subscribe stream). */
export interface CommandSink {
  send(command: NodeCommand): void;
  /**
   * Ends the stream with an error the node acts on (e.g. it was removed); resolves once the stream
   * is closed (its status handed to the connection), or at once when the sink cannot tell.
   */
  close(err: Error): Promise<void> | void;
}

interface Pending {
  demand: TaskDemand;
  /** Bytes of its data sets the node lacked when it was assigned: they take room until reported. */
  dataBytes: number;
  /** When the node acknowledged the task (ACCEPTED or later); its next report reflects it. */
  acceptedAt?: number;
}

interface Presence {
  label: string;
  lastSeen: number;
  online: boolean;
  free: Capacity | undefined;
  accepting: boolean;
  sink: CommandSink | undefined;
  pending: Map<string, Pending>;
  /** The data cache of the latest report (its held digests as a Set, built once per report). */
  cache: { held: ReadonlySet<string>; room: number } | undefined;
  /** Its gateway pipe as the master reaches it (from its Subscribe): it hosts service replicas. */
  gateway: NodePipeAddress | undefined;
  /** Its current Subscribe said it takes exec sessions (SubscribeRequest.exec). */
  exec: boolean;
  /** Its registration said it allows egress tasks (NodeFacts.allows_egress). */
  egress: boolean;
  /** The isolations its registration offered (NodeFacts.isolations); empty: runc only. */
  isolations: readonly Isolation[];
  /** The limits its registration says its engine cannot enforce (NodeFacts.unenforced_limits); empty: all hold. */
  unenforced: readonly LimitKind[];
  /** `free` (the report) less the pending assignments; undefined while `free` is unknown. */
  eff: NodeFree | undefined;
  /** `cache` less the room and plus the digests the pending assignments will fetch. */
  effCache: NodeCacheView | undefined;
  /** The node as placement sees it, rebuilt on each change (placement reads it without copying). */
  view: SchedulableNode | undefined;
}

/** A report's cache status as the scheduler reads it: held digests in a Set, room = free + evictable. */
export function cacheView(c: DataCacheStatus | undefined): { held: ReadonlySet<string>; room: number } | undefined {
  if (!c) return undefined;
  return { held: new Set(c.held.map((h) => h.sha256)), room: c.freeBytes + c.evictableBytes };
}

export class NodeRegistry {
  private readonly nodes = new Map<string, Presence>();
  /** Nodes that can take a task now: online, subscribed, accepting, capacity known, a free slot. */
  private readonly open = new Set<string>();
  /**
   * The open nodes in placement order for a task without data sets or service (compareNodes: most
   * free slots, most free CPUs, smallest id), with the key each was placed by: the first one that
   * fits such a task is the best, found without looking at the rest. A change moves one node
   * (binary search, then one move of the array's tail: microseconds at 10,000 nodes).
   */
  private readonly ranked: { nodeId: string; slots: number; cpus: number }[] = [];
  private readonly rankKey = new Map<string, { nodeId: string; slots: number; cpus: number }>();
  /** Which node each pending assignment is on. */
  private readonly pendingNode = new Map<string, string>();
  private roomListener: ((nodeId: string) => void) | undefined;

  /** A node silent for longer than `offlineAfterMs` is offline (default 3 report intervals). */
  readonly offlineAfterMs: number;

  constructor(private readonly clock: Clock, readonly reportIntervalMs: number, offlineAfterMs?: number) {
    this.offlineAfterMs = nodeTimeoutMs(reportIntervalMs, offlineAfterMs);
  }

  private entry(nodeId: string, label?: string): Presence {
    let p = this.nodes.get(nodeId);
    if (!p) {
      p = { label: label ?? nodeId.slice(0, 8), lastSeen: 0, online: false, free: undefined, accepting: false, sink: undefined, pending: new Map(), cache: undefined, gateway: undefined, exec: false, egress: false, isolations: [], unenforced: [], eff: undefined, effCache: undefined, view: undefined };
      this.nodes.set(nodeId, p);
    }
    if (label && label !== p.label) {
      p.label = label;
      if (p.view) p.view = { ...p.view, label };
    }
    return p;
  }

  /** Called with a node's id whenever it may have gained room (the scheduler offers it the queue). */
  onRoom(listener: (nodeId: string) => void): void {
    this.roomListener = listener;
  }

  /** Recomputes what the node has free from its report and pending assignments (bounded by its slots). */
  private refresh(nodeId: string, p: Presence, gained: boolean): void {
    if (!p.free) {
      p.eff = undefined;
      p.effCache = p.cache;
    } else {
      const eff: NodeFree = { cpus: p.free.cpus, memoryBytes: p.free.memoryBytes, gpus: p.free.gpuIndexes.length, taskSlots: p.free.taskSlots };
      let cache: NodeCacheView | undefined = p.cache;
      for (const { demand, dataBytes } of p.pending.values()) {
        subtractDemand(eff, demand);
        if (cache && demand.data?.length) {
          const coming = new Set(cache.coming);
          for (const d of demand.data) coming.add(d.sha256);
          cache = { held: cache.held, room: cache.room - dataBytes, coming };
        }
      }
      p.eff = eff;
      p.effCache = cache;
    }
    p.view = p.eff && { nodeId, label: p.label, free: p.eff, accepting: p.accepting, hostsServices: p.gateway !== undefined, allowsEgress: p.egress, ...(p.isolations.length > 0 ? { isolations: p.isolations } : {}), ...(p.unenforced.length > 0 ? { unenforcedLimits: p.unenforced } : {}), ...(p.effCache ? { cache: p.effCache } : {}) };
    const canTake = p.online && p.sink !== undefined && p.accepting && p.eff !== undefined && p.eff.taskSlots >= 1;
    if (canTake) this.open.add(nodeId);
    else this.open.delete(nodeId);
    const k = this.rankKey.get(nodeId);
    if (!canTake || !k || k.slots !== p.eff!.taskSlots || k.cpus !== p.eff!.cpus) {
      this.unrank(nodeId);
      if (canTake) this.rank({ nodeId, slots: p.eff!.taskSlots, cpus: p.eff!.cpus });
    }
    if (gained && canTake) this.roomListener?.(nodeId);
  }

  private position(k: { nodeId: string; slots: number; cpus: number }): number {
    let lo = 0;
    let hi = this.ranked.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.ranked[mid]!;
      const before = m.slots > k.slots || (m.slots === k.slots && (m.cpus > k.cpus || (m.cpus === k.cpus && m.nodeId < k.nodeId)));
      if (before) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private rank(k: { nodeId: string; slots: number; cpus: number }): void {
    this.ranked.splice(this.position(k), 0, k);
    this.rankKey.set(k.nodeId, k);
  }

  private unrank(nodeId: string): void {
    const k = this.rankKey.get(nodeId);
    if (!k) return;
    this.rankKey.delete(nodeId);
    const at = this.position(k);
    if (this.ranked[at] === k) this.ranked.splice(at, 1);
  }

  /** A sign of life (report, register, subscribe). Returns true when the node was offline. */
  seen(nodeId: string, label?: string): boolean {
    const p = this.entry(nodeId, label);
    const cameBack = !p.online;
    p.lastSeen = this.clock.now();
    p.online = true;
    if (cameBack) this.refresh(nodeId, p, true);
    return cameBack;
  }

  /**
   * Capacity the node announced (in a report or when subscribing). Assignments the node has
   * acknowledged before this moment are now part of its numbers, so they stop being subtracted.
   */
  updateCapacity(nodeId: string, free: Capacity | undefined, accepting: boolean, runningTaskIds: readonly string[] = []): void {
    const p = this.entry(nodeId);
    const now = this.clock.now();
    p.free = free;
    p.accepting = accepting;
    if (p.pending.size > 0) {
      const running = new Set(runningTaskIds);
      for (const [taskId, pend] of p.pending) {
        if (running.has(taskId) || (pend.acceptedAt !== undefined && pend.acceptedAt < now)) this.unpend(p, taskId);
      }
    }
    this.refresh(nodeId, p, true);
  }

  onReport(nodeId: string, report: ResourceReport): boolean {
    const cameBack = this.seen(nodeId);
    this.entry(nodeId).cache = cacheView(report.cache);
    this.updateCapacity(nodeId, report.free, report.accepting, report.tasks.map((t) => t.taskId));
    return cameBack;
  }

  private unpend(p: Presence, taskId: string): void {
    p.pending.delete(taskId);
    this.pendingNode.delete(taskId);
  }

  /** Makes `sink` the node's command stream; the returned function detaches it (if still current). */
  attach(nodeId: string, sink: CommandSink): () => void {
    const p = this.entry(nodeId);
    p.sink = sink;
    this.refresh(nodeId, p, true);
    return () => {
      if (p.sink !== sink) return;
      p.sink = undefined;
      this.refresh(nodeId, p, false);
    };
  }

  /** The gateway pipe of the node's current Subscribe; undefined: it hosts no replicas. */
  setGateway(nodeId: string, pipe: NodePipeAddress | undefined): void {
    const p = this.entry(nodeId);
    const gained = pipe !== undefined && p.gateway === undefined;
    p.gateway = pipe;
    this.refresh(nodeId, p, gained);
  }

  /** Whether the node's registration says it allows egress tasks (NodeFacts.allows_egress). */
  setEgress(nodeId: string, allowed: boolean): void {
    const p = this.entry(nodeId);
    const gained = allowed && !p.egress;
    p.egress = allowed;
    this.refresh(nodeId, p, gained);
  }

  /** The isolations the node offers, from the facts of its registration (placement reads them). */
  setIsolations(nodeId: string, isolations: readonly Isolation[]): void {
    const p = this.entry(nodeId);
    const gained = isolations.some((i) => !p.isolations.includes(i));
    p.isolations = [...isolations];
    this.refresh(nodeId, p, gained);
  }

  /** The limits the node's engine cannot enforce, from the facts of its registration (placement reads them). */
  setUnenforcedLimits(nodeId: string, kinds: readonly LimitKind[]): void {
    const p = this.entry(nodeId);
    const gained = p.unenforced.some((k) => !kinds.includes(k));
    p.unenforced = [...kinds];
    this.refresh(nodeId, p, gained);
  }

  /** Whether the node's current Subscribe allows exec sessions into its tasks. */
  setExec(nodeId: string, allowed: boolean): void {
    this.entry(nodeId).exec = allowed;
  }

  allowsExec(nodeId: string): boolean {
    return this.nodes.get(nodeId)?.exec ?? false;
  }

  /** Where the gateway reaches the node's replicas, while the node is online. */
  gatewayOf(nodeId: string): NodePipeAddress | undefined {
    const p = this.nodes.get(nodeId);
    return p?.online ? p.gateway : undefined;
  }

  /**
   * Online, its capacity known, and not accepting tasks (paused or draining): its service replicas
   * are handed over. A node not heard from since a master restart (no capacity yet) is not leaving.
   */
  isLeaving(nodeId: string): boolean {
    const p = this.nodes.get(nodeId);
    return p !== undefined && p.online && p.free !== undefined && !p.accepting;
  }

  sink(nodeId: string): CommandSink | undefined {
    return this.nodes.get(nodeId)?.sink;
  }

  /** Records an assignment the node's reported capacity does not show yet. */
  addPending(nodeId: string, taskId: string, demand: TaskDemand): void {
    const p = this.entry(nodeId);
    // What it lacks and no other pending task fetches already (a data set is fetched once).
    const dataBytes = demand.data?.length && p.cache ? missingBytes(demand.data, p.cache.held, p.effCache?.coming) : 0;
    const other = this.pendingNode.get(taskId);
    if (other !== undefined && other !== nodeId) this.dropPending(taskId);
    p.pending.set(taskId, { demand, dataBytes });
    this.pendingNode.set(taskId, nodeId);
    this.refresh(nodeId, p, false);
  }

  /** Digests the node reported holding in its latest report (empty without a cache). */
  heldData(nodeId: string): ReadonlySet<string> {
    return this.nodes.get(nodeId)?.cache?.held ?? new Set();
  }

  markAccepted(nodeId: string, taskId: string): void {
    const pend = this.nodes.get(nodeId)?.pending.get(taskId);
    if (pend && pend.acceptedAt === undefined) pend.acceptedAt = this.clock.now();
  }

  dropPending(taskId: string): void {
    const nodeId = this.pendingNode.get(taskId);
    if (nodeId === undefined) return;
    const p = this.nodes.get(nodeId);
    this.pendingNode.delete(taskId);
    if (!p) return;
    p.pending.delete(taskId);
    this.refresh(nodeId, p, true);
  }

  isOnline(nodeId: string): boolean {
    return this.nodes.get(nodeId)?.online ?? false;
  }

  /** Ids of the nodes online now (a live view: do not change the registry while iterating). */
  *onlineNodeIds(): IterableIterator<string> {
    for (const [id, p] of this.nodes) if (p.online) yield id;
  }

  lastSeen(nodeId: string): number | undefined {
    return this.nodes.get(nodeId)?.lastSeen;
  }

  /** A removed node: no capacity, no command stream, never schedulable again. `why` ends its stream. */
  forget(nodeId: string, why?: Error): Promise<void> {
    const p = this.nodes.get(nodeId);
    const told = p?.sink && why ? p.sink.close(why) : undefined;
    if (p) for (const taskId of p.pending.keys()) this.pendingNode.delete(taskId);
    this.nodes.delete(nodeId);
    this.open.delete(nodeId);
    this.unrank(nodeId);
    return Promise.resolve(told);
  }

  /**
   * After a master restart: the node counts as online until `withinMs` from now (or the usual
   * offline period, if longer), so it has time to reconnect before its tasks are given up.
   */
  awaitReturn(nodeId: string, withinMs: number): void {
    const p = this.entry(nodeId);
    p.online = true;
    p.lastSeen = this.clock.now() + Math.max(0, withinMs - this.offlineAfterMs);
  }

  /** Marks nodes silent for too long offline; returns the ones that just went offline. */
  sweep(): string[] {
    const now = this.clock.now();
    const lost: string[] = [];
    for (const [id, p] of this.nodes) {
      if (p.online && now - p.lastSeen > this.offlineAfterMs) {
        p.online = false;
        for (const taskId of p.pending.keys()) this.pendingNode.delete(taskId);
        p.pending.clear();
        this.refresh(id, p, false);
        lost.push(id);
      }
    }
    return lost;
  }

  /** Ids of the open nodes in compareNodes order for tasks without data or service (a live view, like openNodes). */
  *rankedOpenNodes(): IterableIterator<string> {
    for (const k of this.ranked) yield k.nodeId;
  }

  /** Ids of the nodes that can take a task now (a live view: do not change the registry while iterating). */
  openNodes(): ReadonlySet<string> {
    return this.open;
  }

  /**
   * One node as placement sees it (free capacity less pending assignments; a live view, not a
   * copy), or undefined unless it is online, subscribed and its capacity known.
   */
  schedulableNode(nodeId: string): SchedulableNode | undefined {
    const p = this.nodes.get(nodeId);
    if (!p || !p.online || !p.sink) return undefined;
    return p.view;
  }

  /** Online nodes with an open command stream and a known capacity, as the scheduler sees them (for queue reasons). */
  schedulable(): SchedulableNode[] {
    const out: SchedulableNode[] = [];
    for (const nodeId of this.nodes.keys()) {
      const n = this.schedulableNode(nodeId);
      if (n) out.push(n);
    }
    return out;
  }
}
