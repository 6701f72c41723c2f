// The pure decisions of task placement: whether a demand fits a node, the order among fitting
// nodes, why a task fits none (the queue reason), and placeTasks, one FIFO pass over a snapshot.
import { formatBytes } from '../common/units.js';
import { TaskNetwork, type Isolation, type LimitKind, type TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { isolationName, offersIsolation } from '../protocol/isolation-rules.js';
import { describeLimits, limitsNotHeld, limitsSetBy } from '../protocol/limit-rules.js';
import { dataNeedsOf, explainData, heldBytes, missingBytes, type DataNeed, type NodeCacheView } from './data-placement.js';

export interface TaskDemand {
  /** 0 = no explicit limit: the node applies its default, so only a slot is needed. */
  cpus: number;
  memoryBytes: number;
  gpus: number;
  /** The data sets it mounts, each digest once; absent or empty without data. */
  data?: readonly DataNeed[];
  /** It asked for the egress network: only a node that allows egress may run it. */
  egress?: boolean;
  /** The isolation it asked for (--isolation); absent: any node (offersIsolation). */
  isolation?: Isolation;
  /** The limits it sets explicitly (limitsSetBy): only a node enforcing each may run it; absent: none. */
  limits?: readonly LimitKind[];
}

export interface QueuedTask {
  id: string;
  demand: TaskDemand;
  /** Nodes that rejected this task; never offered it again. */
  excludedNodes: readonly string[];
  /** A service replica: the service's name (it goes only to nodes that host services). */
  service?: string;
}

export interface NodeFree {
  cpus: number;
  memoryBytes: number;
  gpus: number;
  taskSlots: number;
}

export interface SchedulableNode {
  nodeId: string;
  /** How the node is named in reasons (its display name, or a short id). */
  label: string;
  /** What the node reported free, minus what the master assigned that the report does not show yet. */
  free: NodeFree;
  /** False while the node drains or is paused. */
  accepting: boolean;
  /** Its data cache; absent when the node reports none (it cannot take a task with data). */
  cache?: NodeCacheView;
  /** It announced a gateway pipe, so it may run service replicas. */
  hostsServices?: boolean;
  /** Services it holds a live replica of: another replica of one goes elsewhere when it can. */
  services?: ReadonlySet<string>;
  /** Started with --allow-egress (NodeFacts.allows_egress): it may run egress tasks. */
  allowsEgress?: boolean;
  /** The isolations it offers (NodeFacts.isolations); absent or empty: runc only. */
  isolations?: readonly Isolation[];
  /** The limits its engine cannot enforce (NodeFacts.unenforced_limits); absent or empty: all hold. */
  unenforcedLimits?: readonly LimitKind[];
}

export interface Assignment {
  taskId: string;
  nodeId: string;
}

export interface Placement {
  assignments: Assignment[];
  /** Tasks that stay queued, with the reason shown to the user. */
  unplaced: { taskId: string; reason: string }[];
}

export function demandOf(spec: TaskSpec): TaskDemand {
  const limits = limitsSetBy(spec.limits);
  return {
    cpus: spec.limits?.cpus ?? 0,
    memoryBytes: spec.limits?.memoryBytes ?? 0,
    gpus: spec.limits?.gpus ?? 0,
    data: dataNeedsOf(spec),
    ...(spec.network === TaskNetwork.TASK_NETWORK_EGRESS ? { egress: true } : {}),
    ...(spec.isolation ? { isolation: spec.isolation } : {}),
    ...(limits.length > 0 ? { limits } : {}),
  };
}

/** Whether the node enforces every limit the task sets (a rootless Podman on cgroup v1 enforces none). */
export function limitsFit(d: Pick<TaskDemand, 'limits'>, n: Pick<SchedulableNode, 'unenforcedLimits'>): boolean {
  return limitsNotHeld(d.limits, n.unenforcedLimits).length === 0;
}

/** Whether the node offers what the task needs besides capacity (today: the egress network). */
export function networkFits(d: TaskDemand, n: Pick<SchedulableNode, 'allowsEgress'>): boolean {
  return !d.egress || n.allowsEgress === true;
}

/**
 * Whether the node may run the task at all, its free capacity and data aside: accepting, a service
 * host for a replica, the network, isolation and limits it needs, and not a node that rejected it.
 * The one-pass placement and the task manager's incremental one both ask this (whyUnplaced says
 * which part fails).
 */
export function nodeQualifies(t: Pick<QueuedTask, 'demand' | 'service' | 'excludedNodes'>, n: SchedulableNode): boolean {
  return n.accepting && (t.service === undefined || n.hostsServices === true) && networkFits(t.demand, n) && offersIsolation(t.demand.isolation, n.isolations) && limitsFit(t.demand, n) && !t.excludedNodes.includes(n.nodeId);
}

export function fits(d: TaskDemand, f: NodeFree): boolean {
  return f.taskSlots >= 1 && f.cpus >= d.cpus && f.memoryBytes >= d.memoryBytes && f.gpus >= d.gpus;
}

function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

function fmtCpus(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, '');
}

/** The first demand dimension no single node can meet, phrased for the user. */
function explain(task: QueuedTask, nodes: readonly SchedulableNode[]): string {
  const d = task.demand;
  const largest = (pick: (f: NodeFree) => number): SchedulableNode =>
    nodes.reduce((best, n) => (pick(n.free) > pick(best.free) ? n : best));
  if (nodes.every((n) => n.free.taskSlots < 1)) return 'every online node is at its task limit';
  const data = explainData(d.data ?? [], nodes);
  if (data) return data;
  if (!nodes.some((n) => n.free.cpus >= d.cpus)) {
    const b = largest((f) => f.cpus);
    return `needs ${fmtCpus(d.cpus)} CPUs; largest free: node ${b.label} with ${fmtCpus(b.free.cpus)}`;
  }
  if (!nodes.some((n) => n.free.memoryBytes >= d.memoryBytes)) {
    const b = largest((f) => f.memoryBytes);
    return `needs ${formatBytes(d.memoryBytes)} memory; largest free: node ${b.label} with ${formatBytes(b.free.memoryBytes)}`;
  }
  if (!nodes.some((n) => n.free.gpus >= d.gpus)) {
    const b = largest((f) => f.gpus);
    return `needs ${plural(d.gpus, 'GPU')}; largest free: node ${b.label} with ${b.free.gpus}`;
  }
  return `no single node has ${fmtCpus(d.cpus)} CPUs, ${formatBytes(d.memoryBytes)} memory, ${plural(d.gpus, 'GPU')}${d.data?.length ? ', room for its data sets' : ''} and a free task slot at once`;
}

/** A node's cache during one pass: what it reported, plus what tasks placed in this pass will fetch. */
interface PassCache {
  held: ReadonlySet<string>;
  room: number;
  coming: Set<string>;
}

/** Whether the node's cache can take the data sets it lacks (always, for a task without data). */
export function dataFits(needs: readonly DataNeed[], cache: NodeCacheView | undefined): boolean {
  if (needs.length === 0) return true;
  return cache !== undefined && missingBytes(needs, cache.held, cache.coming) <= cache.room;
}

/** Why a queued task waits, as a stable code (metrics) and the sentence shown to the user. */
export type QueueReasonCode =
  | 'no_node' | 'not_accepting' | 'no_service_host' | 'no_egress' | 'isolation' | 'limits_unenforced' | 'rejected' | 'task_slots' | 'data' | 'cpus' | 'memory' | 'gpus' | 'combined';

export interface QueueReason {
  code: QueueReasonCode;
  reason: string;
}

function classify(text: string, d: TaskDemand): QueueReasonCode {
  if (text.startsWith('every online node is at its task limit')) return 'task_slots';
  if (text.startsWith('no node has a data cache') || text.startsWith('no node has room for its data sets')) return 'data';
  if (text.startsWith(`needs ${fmtCpus(d.cpus)} CPUs`)) return 'cpus';
  if (text.startsWith(`needs ${formatBytes(d.memoryBytes)} memory`)) return 'memory';
  if (text.startsWith('needs ') && text.includes('GPU')) return 'gpus';
  return 'combined';
}

/**
 * Why `task` fits no node of `nodes` (their free capacity and caches as of now), or undefined when
 * one node could take it. The same checks, in the same order, as placement makes.
 */
export function whyUnplaced(task: QueuedTask, nodes: readonly SchedulableNode[]): QueueReason | undefined {
  if (nodes.length === 0) return { code: 'no_node', reason: 'no online node' };
  const accepting = nodes.filter((n) => n.accepting);
  if (accepting.length === 0) return { code: 'not_accepting', reason: 'no online node is accepting tasks (all draining or paused)' };
  const hosts = task.service === undefined ? accepting : accepting.filter((n) => n.hostsServices);
  if (hosts.length === 0) return { code: 'no_service_host', reason: 'no node hosts services (none announced a gateway pipe)' };
  const egress = hosts.filter((n) => networkFits(task.demand, n));
  if (egress.length === 0) return { code: 'no_egress', reason: 'no accepting node allows egress (start a node with --allow-egress)' };
  const isolated = egress.filter((n) => offersIsolation(task.demand.isolation, n.isolations));
  if (isolated.length === 0) {
    const name = isolationName(task.demand.isolation!);
    return { code: 'isolation', reason: `no accepting node offers ${name} isolation (--isolation ${name}; a node offers gVisor once runsc is installed and registered: hivemind doctor)` };
  }
  const bounded = isolated.filter((n) => limitsFit(task.demand, n));
  if (bounded.length === 0) {
    const dropped = [...new Set(isolated.flatMap((n) => limitsNotHeld(task.demand.limits, n.unenforcedLimits)))].sort();
    return {
      code: 'limits_unenforced',
      reason: `no accepting node can enforce its ${describeLimits(dropped)} limit${dropped.length > 1 ? 's' : ''} (${isolated.map((n) => n.label).join(', ')}: rootless Podman on cgroup v1 enforces none; hivemind nodes shows each node's engine); drop the limit or add a node on Docker, rootful Podman or cgroup v2`,
    };
  }
  const candidates = bounded.filter((n) => !task.excludedNodes.includes(n.nodeId));
  if (candidates.length === 0) return { code: 'rejected', reason: `rejected by every accepting node (${bounded.map((n) => n.label).join(', ')})` };
  const needs = task.demand.data ?? [];
  if (candidates.some((n) => fits(task.demand, n.free) && dataFits(needs, n.cache))) return undefined;
  const reason = explain(task, candidates);
  return { code: classify(reason, task.demand), reason };
}

/** What the placement order compares of one fitting node for one task. */
export interface NodeRank {
  nodeId: string;
  /** It holds a live replica of the task's service already (0 or 1). */
  sibling: number;
  /** Bytes of the task's data sets it holds. */
  held: number;
  free: NodeFree;
}

/**
 * The placement order: replicas of one service spread over nodes (one node lost does not take
 * them all), then the most data held (no fetch beats any spread), the most free task slots, the
 * most free CPUs (spreading load), the smallest id (determinism). Negative: `a` goes first.
 */
export function compareNodes(a: NodeRank, b: NodeRank): number {
  return a.sibling - b.sibling || b.held - a.held || b.free.taskSlots - a.free.taskSlots || b.free.cpus - a.free.cpus || (a.nodeId < b.nodeId ? -1 : 1);
}

/** Takes an assigned task's demand off a node's free capacity. */
export function subtractDemand(f: NodeFree, d: TaskDemand): void {
  f.taskSlots -= 1;
  f.cpus -= d.cpus;
  f.memoryBytes -= d.memoryBytes;
  f.gpus -= d.gpus;
}

/**
 * Places tasks in submission order, in one pass over a snapshot of the fleet: the reference the
 * master's incremental placement (placement-round.ts) is tested against. A service replica goes
 * only to a node that hosts services; each task goes to the first fitting node in the order of
 * compareNodes; that node's free capacity (and the room of its data cache) shrinks before the next
 * task is considered. A task that fits nowhere stays queued with its reason and does not block
 * smaller tasks behind it.
 */
export function placeTasks(queued: readonly QueuedTask[], nodes: readonly SchedulableNode[]): Placement {
  const free = new Map(nodes.map((n) => [n.nodeId, { ...n.free }]));
  const services = new Map(nodes.map((n) => [n.nodeId, new Set(n.services)]));
  const caches = new Map<string, PassCache>();
  for (const n of nodes) if (n.cache) caches.set(n.nodeId, { held: n.cache.held, room: n.cache.room, coming: new Set(n.cache.coming) });
  const out: Placement = { assignments: [], unplaced: [] };
  for (const task of queued) {
    const all = nodes.map((n) => ({ ...n, free: free.get(n.nodeId)!, cache: caches.get(n.nodeId) }));
    const why = whyUnplaced(task, all);
    if (why) {
      out.unplaced.push({ taskId: task.id, reason: why.reason });
      continue;
    }
    const needs = task.demand.data ?? [];
    const ranks = all
      .filter((n) => nodeQualifies(task, n) && fits(task.demand, n.free) && dataFits(needs, n.cache))
      .map((n): NodeRank => ({
        nodeId: n.nodeId,
        sibling: task.service !== undefined && services.get(n.nodeId)!.has(task.service) ? 1 : 0,
        held: needs.length === 0 ? 0 : heldBytes(needs, n.cache!.held),
        free: n.free,
      }));
    const chosen = ranks.sort(compareNodes)[0]!;
    const cache = caches.get(chosen.nodeId);
    if (cache && needs.length > 0) {
      cache.room -= missingBytes(needs, cache.held, cache.coming);
      for (const d of needs) cache.coming.add(d.sha256);
    }
    subtractDemand(free.get(chosen.nodeId)!, task.demand);
    if (task.service !== undefined) services.get(chosen.nodeId)!.add(task.service);
    out.assignments.push({ taskId: task.id, nodeId: chosen.nodeId });
  }
  return out;
}
