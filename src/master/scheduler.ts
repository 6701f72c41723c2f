// FIFO task placement as a pure function: queued tasks (oldest first) and the free capacity of
// online nodes in, assignments and a human reason for every task left in the queue out.
import { formatBytes } from '../common/units.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { dataNeedsOf, explainData, heldBytes, missingBytes, type DataNeed, type NodeCacheView } from './data-placement.js';

export interface TaskDemand {
  /** 0 = no explicit limit: the node applies its default, so only a slot is needed. */
  cpus: number;
  memoryBytes: number;
  gpus: number;
  /** The data sets it mounts, each digest once; absent or empty without data. */
  data?: readonly DataNeed[];
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
  return {
    cpus: spec.limits?.cpus ?? 0,
    memoryBytes: spec.limits?.memoryBytes ?? 0,
    gpus: spec.limits?.gpus ?? 0,
    data: dataNeedsOf(spec),
  };
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
function explain(task: QueuedTask, nodes: SchedulableNode[]): string {
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

function dataFits(needs: readonly DataNeed[], cache: PassCache | undefined): boolean {
  if (needs.length === 0) return true;
  return cache !== undefined && missingBytes(needs, cache.held, cache.coming) <= cache.room;
}

/**
 * Places tasks in submission order. A service replica goes only to a node that hosts services, and
 * first to one holding no replica of its service yet. Each task goes to the fitting node holding the most bytes of
 * its data sets (no fetch beats any spread), then the most free task slots, then the most free
 * CPUs (spreading load), then the smallest id (determinism); that node's free capacity (and the
 * room of its data cache) shrinks before the next task is considered. A task that fits nowhere
 * stays queued with its reason and does not block smaller tasks behind it.
 */
export function placeTasks(queued: readonly QueuedTask[], nodes: readonly SchedulableNode[]): Placement {
  const free = new Map(nodes.map((n) => [n.nodeId, { ...n.free }]));
  const services = new Map(nodes.map((n) => [n.nodeId, new Set(n.services)]));
  const caches = new Map<string, PassCache>();
  for (const n of nodes) if (n.cache) caches.set(n.nodeId, { held: n.cache.held, room: n.cache.room, coming: new Set(n.cache.coming) });
  const live = (): SchedulableNode[] => nodes.map((n) => ({ ...n, free: free.get(n.nodeId)! }));
  const out: Placement = { assignments: [], unplaced: [] };
  for (const task of queued) {
    const all = live();
    if (all.length === 0) {
      out.unplaced.push({ taskId: task.id, reason: 'no online node' });
      continue;
    }
    const accepting = all.filter((n) => n.accepting);
    if (accepting.length === 0) {
      out.unplaced.push({ taskId: task.id, reason: 'no online node is accepting tasks (all draining or paused)' });
      continue;
    }
    const hosts = task.service === undefined ? accepting : accepting.filter((n) => n.hostsServices);
    if (hosts.length === 0) {
      out.unplaced.push({ taskId: task.id, reason: 'no node hosts services (none announced a gateway pipe)' });
      continue;
    }
    const candidates = hosts.filter((n) => !task.excludedNodes.includes(n.nodeId));
    if (candidates.length === 0) {
      out.unplaced.push({ taskId: task.id, reason: `rejected by every accepting node (${hosts.map((n) => n.label).join(', ')})` });
      continue;
    }
    const needs = task.demand.data ?? [];
    const fitting = candidates.filter((n) => fits(task.demand, n.free) && dataFits(needs, caches.get(n.nodeId)));
    if (fitting.length === 0) {
      out.unplaced.push({ taskId: task.id, reason: explain(task, candidates.map((n) => ({ ...n, cache: caches.get(n.nodeId) }))) });
      continue;
    }
    const held = (n: SchedulableNode): number => (needs.length === 0 ? 0 : heldBytes(needs, caches.get(n.nodeId)!.held));
    // Replicas of one service spread over nodes, so that one node lost does not take them all.
    const sibling = (n: SchedulableNode): number => (task.service !== undefined && services.get(n.nodeId)!.has(task.service) ? 1 : 0);
    fitting.sort((a, b) => sibling(a) - sibling(b) || held(b) - held(a) || b.free.taskSlots - a.free.taskSlots || b.free.cpus - a.free.cpus || (a.nodeId < b.nodeId ? -1 : 1));
    const chosen = fitting[0]!;
    const cache = caches.get(chosen.nodeId);
    if (cache && needs.length > 0) {
      cache.room -= missingBytes(needs, cache.held, cache.coming);
      for (const d of needs) cache.coming.add(d.sha256);
    }
    const f = free.get(chosen.nodeId)!;
    f.taskSlots -= 1;
    f.cpus -= task.demand.cpus;
    f.memoryBytes -= task.demand.memoryBytes;
    f.gpus -= task.demand.gpus;
    if (task.service !== undefined) services.get(chosen.nodeId)!.add(task.service);
    out.assignments.push({ taskId: task.id, nodeId: chosen.nodeId });
  }
  return out;
}
