// The queued tasks in memory, grouped by demand class: tasks asking for the same resources, data
// sets and service, excluded from the same nodes, are interchangeable for placement, so each class
// is one FIFO and the scheduler looks at a class's head only. Loaded once from the store at start,
// then kept by the task manager on submit, requeue, assign and cancel. An entry holds what
// placement needs, not the task's spec (read from the store when the task is assigned).
import type { QueuedTask, TaskDemand } from './scheduler.js';

export interface QueueEntry {
  id: string;
  /** Submission time, then the order it entered this queue: the FIFO order. */
  createdAt: number;
  seq: number;
  /** When it entered the queue (clock ms): placement latency is measured from here. */
  enqueuedAt: number;
  cls: DemandClass;
  /** Cancelled or assigned while not at its class's head: skipped when it reaches the head. */
  gone: boolean;
}

export class DemandClass {
  /** Entries in FIFO order from `head`; entries before it are spent. */
  private items: QueueEntry[] = [];
  private head = 0;
  /** Live (not gone) entries. */
  size = 0;
  /**
   * Not yet offered the whole fleet since it became non-empty. A class that is not fresh waits
   * because no node fits its demand: only a node that gained room can change that.
   */
  fresh = true;

  constructor(readonly key: string, readonly task: Omit<QueuedTask, 'id'>) {}

  /** The oldest live entry. */
  peek(): QueueEntry | undefined {
    while (this.head < this.items.length && this.items[this.head]!.gone) this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return this.items[this.head];
  }

  insert(e: QueueEntry): void {
    const last = this.items[this.items.length - 1];
    if (!last || before(last, e)) this.items.push(e);
    else {
      // A requeued task goes back to its place by submission time (rare: a rejection or a lost attempt).
      let lo = this.head;
      let hi = this.items.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (before(this.items[mid]!, e)) lo = mid + 1;
        else hi = mid;
      }
      this.items.splice(lo, 0, e);
    }
    this.size++;
  }
}

function before(a: QueueEntry, b: QueueEntry): boolean {
  return a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.seq < b.seq);
}

/** Classes are keyed by everything placement reads of a task; the exclusions sorted, so order does not split a class. */
export function classKey(t: Omit<QueuedTask, 'id'>): string {
  const d = t.demand;
  const data = (d.data ?? []).map((n) => `${n.sha256}:${n.size}`).sort().join(',');
  return `${d.cpus}|${d.memoryBytes}|${d.gpus}|${data}|${d.egress ? 'egress' : ''}|${t.service ?? ''}|${[...t.excludedNodes].sort().join(',')}|${d.isolation ?? 0}|${(d.limits ?? []).join(',')}`;
}

export class TaskQueue {
  private readonly classes = new Map<string, DemandClass>();
  private readonly entries = new Map<string, QueueEntry>();
  private seq = 0;
  /** Classes that became non-empty and were not yet offered the fleet. */
  private readonly freshOnes = new Set<DemandClass>();

  get size(): number {
    return this.entries.size;
  }

  /** Adds a queued task (idempotent: a task already queued keeps its place). */
  add(t: QueuedTask, createdAt: number, enqueuedAt: number): QueueEntry {
    const known = this.entries.get(t.id);
    if (known) return known;
    // Without data, the demand is kept without its (empty) data list: every other field as given.
    const { data: _none, ...dataless } = t.demand;
    const demand: TaskDemand = t.demand.data?.length ? t.demand : dataless;
    const shape = { demand, excludedNodes: t.excludedNodes, ...(t.service !== undefined ? { service: t.service } : {}) };
    const key = classKey(shape);
    let cls = this.classes.get(key);
    if (!cls) {
      cls = new DemandClass(key, shape);
      this.classes.set(key, cls);
      this.freshOnes.add(cls);
    }
    const e: QueueEntry = { id: t.id, createdAt, seq: this.seq++, enqueuedAt, cls, gone: false };
    cls.insert(e);
    this.entries.set(t.id, e);
    return e;
  }

  /** Takes a task out (assigned or cancelled); false when it was not queued. */
  remove(taskId: string): boolean {
    const e = this.entries.get(taskId);
    if (!e) return false;
    this.entries.delete(taskId);
    e.gone = true;
    e.cls.size--;
    if (e.cls.size === 0) {
      this.classes.delete(e.cls.key);
      this.freshOnes.delete(e.cls);
    }
    return true;
  }

  get(taskId: string): QueueEntry | undefined {
    return this.entries.get(taskId);
  }

  /** Non-empty classes. */
  allClasses(): IterableIterator<DemandClass> {
    return this.classes.values();
  }

  get classCount(): number {
    return this.classes.size;
  }

  /** The classes not yet offered the whole fleet; the caller marks each one done (`settle`). */
  fresh(): DemandClass[] {
    return [...this.freshOnes];
  }

  /** The class was offered the whole fleet: from now on it waits for a node that gains room. */
  settle(cls: DemandClass): void {
    cls.fresh = false;
    this.freshOnes.delete(cls);
  }
}
