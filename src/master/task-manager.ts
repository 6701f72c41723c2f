// Every task state transition at the master: placement, node updates, cancellation, and giving
// up attempts of lost nodes. Both gRPC services call in here; each change is committed to the
// store, then announced on MasterEvents. The attempt rule is documented at the top of master.ts.
import type { Clock } from '../common/clock.js';
import { echoValue } from '../common/echo-value.js';
import type { Logger } from '../common/logger.js';
import { NotFoundError, errorMessage } from '../common/errors.js';
import { OutcomeKind, TaskOutcome, TaskState } from '../protocol/gen/hivemind/v1/common.js';
import type { NodeCommand, RunningTask, TaskAssignment, TaskUpdate, TaskUpdateAck } from '../protocol/gen/hivemind/v1/node.js';
import type { BlobStore } from './blob-store.js';
import type { MasterEvents } from './master-events.js';
import { isTerminal, type MasterStore, type NodeRow, type QueueCursor, type TaskRow } from './master-store.js';
import { InvalidArgumentError, PreconditionError } from './master-errors.js';
import type { NodeRegistry } from './registry.js';
import { compareNodes, dataFits, demandOf, fits, nodeQualifies, whyUnplaced, type NodeRank, type QueuedTask, type QueueReason, type QueueReasonCode, type SchedulableNode } from './scheduler.js';
import { heldBytes } from './data-placement.js';
import { TaskQueue, type DemandClass } from './task-queue.js';
import { decideNodeUpdate, isNodeLiveState, stateName } from './task-transitions.js';
import { DataProgressBoard } from './data-progress.js';
import type { DataProgress } from '../protocol/gen/hivemind/v1/common.js';

function nodeLabel(n: Pick<NodeRow, 'id' | 'name'>): string {
  return n.name && n.name !== n.id ? `${n.name} (${n.id.slice(0, 8)})` : n.id.slice(0, 8);
}

export interface TaskManagerOptions {
  /** Told the time from entering the queue to ASSIGNED of each placed task (the placement latency). */
  onPlaced?: (latencyMs: number) => void;
  /** Assignments per placement round before yielding to the event loop (default 256). */
  maxAssignmentsPerRound?: number;
  /** Milliseconds of placement per round before yielding to the event loop (default 20). */
  maxRoundMs?: number;
}

/** A queue reason as computed for a demand class, with when (reasons are recomputed at most once a second). */
interface CachedReason {
  at: number;
  why: QueueReason | undefined;
}

const REASON_TTL_MS = 1000;

function queuedTaskOf(t: TaskRow): QueuedTask {
  return { id: t.id, demand: demandOf(t.spec), excludedNodes: t.excludedNodes, ...(t.spec.service ? { service: t.spec.service.service } : {}) };
}

/** Where the scheduler stands, for the cost tests and the bench: work counted, not timed. */
export interface PlacementCounters {
  rounds: number;
  /** Nodes checked against a class's demand. */
  fitChecks: number;
  /** Classes looked at in rounds. */
  classVisits: number;
  assignments: number;
}

export class TaskManager {
  private scheduleQueued = false;
  /** The queue is being read from the store (start()): no placement until it is whole. */
  private loading = false;
  /** Queued tasks by demand class; loaded from the store by start() or on first use. */
  private queueState: TaskQueue | undefined;
  /** Nodes that gained room since the last complete round: offered to the waiting classes. */
  private readonly roomy = new Set<string>();
  private readonly reasons = new WeakMap<DemandClass, CachedReason>();
  readonly counters: PlacementCounters = { rounds: 0, fitChecks: 0, classVisits: 0, assignments: 0 };
  private readonly maxPerRound: number;
  private closed = false;
  /** Open result uploads per task, so that giving up an attempt can abort its upload. */
  private readonly uploads = new Map<string, { attempt: number; abort: () => void }>();
  /** What nodes said of their fetching of each task's data sets (TaskInfo.data_progress). */
  private readonly progress = new DataProgressBoard();

  constructor(
    private readonly store: MasterStore,
    private readonly blobs: BlobStore,
    private readonly registry: NodeRegistry,
    private readonly events: MasterEvents,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: TaskManagerOptions = {},
  ) {
    this.maxPerRound = opts.maxAssignmentsPerRound ?? 256;
    registry.onRoom((nodeId) => {
      this.roomy.add(nodeId);
      this.scheduleSoon();
    });
  }

  /**
   * Loads the queue from the store in pages, yielding to the event loop between them, so that a
   * master restarting with a long queue keeps answering its nodes meanwhile. Placement waits for
   * the load (a partial queue would break FIFO); tasks submitted, requeued or cancelled during it
   * are kept as usual (a page read later sees only what is still queued). Without start(), the
   * queue is read in one go on first use.
   */
  async start(pageSize = 2000): Promise<void> {
    if (this.queueState) return;
    const q = new TaskQueue();
    this.queueState = q;
    this.loading = true;
    try {
      let after: QueueCursor | undefined;
      do {
        const page = this.store.queuedTasksPage(after, pageSize);
        const now = this.clock.now();
        for (const t of page.tasks) q.add(queuedTaskOf(t), t.createdAt, now);
        after = page.next;
        await new Promise((resolve) => setImmediate(resolve));
      } while (after && !this.closed);
    } catch (err) {
      this.queueState = undefined;
      throw err;
    } finally {
      this.loading = false;
    }
    this.scheduleSoon();
  }

  private get queue(): TaskQueue {
    if (!this.queueState) {
      const q = new TaskQueue();
      const now = this.clock.now();
      for (const t of this.store.queuedTasks()) q.add(queuedTaskOf(t), t.createdAt, now);
      this.queueState = q;
    }
    return this.queueState;
  }

  /** A task entered the queue (submitted, or requeued): it is placed in the next round. */
  private enqueue(t: TaskRow | undefined): void {
    if (!t || t.state !== TaskState.TASK_STATE_QUEUED) return;
    this.queue.add(queuedTaskOf(t), t.createdAt, this.clock.now());
    this.scheduleSoon();
  }

  /** Stores a new queued task (and its first event), announces it and queues it for placement. */
  submit(t: TaskRow, message: string): void {
    this.store.insertTask(t, { state: t.state, at: t.createdAt, nodeId: null, attempt: t.attempt, message });
    this.events.emit('task', t);
    this.enqueue(t);
  }

  private changed(t: TaskRow | undefined): void {
    if (!t) return;
    this.progress.note(t.id, t.state, undefined);
    this.events.emit('task', t);
  }

  /** The latest data progress of a task, while it is ACCEPTED (fetching data). */
  dataProgressOf(t: Pick<TaskRow, 'id' | 'state'>): DataProgress | undefined {
    return this.progress.of(t.id, t.state);
  }

  /** Runs placement soon, once, however many triggers arrive in the same tick. */
  scheduleSoon(): void {
    if (this.scheduleQueued || this.closed) return;
    this.scheduleQueued = true;
    setImmediate(() => {
      this.scheduleQueued = false;
      if (this.closed) return;
      try {
        this.schedule();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'scheduling failed');
      }
    });
  }

  /**
   * One placement round. Classes are served in the order of their heads' age (FIFO across
   * classes); a class not yet offered the fleet looks at every node that can take a task, a
   * waiting class only at the nodes that gained room since the last round (nothing else changed
   * for it). A class whose head fits nowhere waits and does not block the classes behind it. A
   * round stops after `maxAssignmentsPerRound` assignments and continues on the next turn of the
   * event loop, so a burst of free capacity never stalls it.
   */
  schedule(): void {
    if (this.loading) return; // start() schedules once the queue is whole
    const q = this.queue;
    this.counters.rounds++;
    if (q.size === 0) {
      this.roomy.clear();
      return;
    }
    const roomy = [...this.roomy];
    const classes = roomy.length > 0 ? [...q.allClasses()] : q.fresh();
    const heap = new ClassHeap();
    for (const c of classes) heap.push(c);
    let services: Map<string, Set<string>> | undefined;
    const placed: { taskId: string; nodeId: string; enqueuedAt: number }[] = [];
    let cut = false;
    const until = performance.now() + (this.opts.maxRoundMs ?? 20);
    while (heap.size > 0) {
      if (placed.length >= this.maxPerRound || (placed.length > 0 && performance.now() > until)) {
        cut = true;
        break;
      }
      const c = heap.pop()!;
      this.counters.classVisits++;
      const head = c.peek();
      if (!head) continue;
      if (c.task.service !== undefined) services ??= this.store.replicaServicesByNode();
      const nodeId = this.pick(c, c.fresh ? this.registry.openNodes() : roomy, services);
      if (nodeId === undefined) {
        this.queue.settle(c);
        continue;
      }
      q.remove(head.id);
      this.registry.addPending(nodeId, head.id, c.task.demand);
      if (c.task.service !== undefined) {
        let held = services!.get(nodeId);
        if (!held) services!.set(nodeId, (held = new Set()));
        held.add(c.task.service);
      }
      placed.push({ taskId: head.id, nodeId, enqueuedAt: head.enqueuedAt });
      if (c.size > 0) heap.push(c);
    }
    if (cut) this.scheduleSoon();
    else this.roomy.clear();
    if (placed.length > 0) this.commit(placed);
  }

  /** The best node among `candidates` for the head of class `c` (compareNodes), if one fits. */
  private pick(c: DemandClass, candidates: Iterable<string>, services: Map<string, Set<string>> | undefined): string | undefined {
    const t = c.task;
    const needs = t.demand.data ?? [];
    // Without data or service, compareNodes orders by free slots, CPUs and id only: the registry
    // keeps the open nodes in that order, so the first that fits is the best.
    const ordered = needs.length === 0 && t.service === undefined;
    if (ordered && c.fresh) candidates = this.registry.rankedOpenNodes();
    let best: NodeRank | undefined;
    const open = this.registry.openNodes();
    for (const nodeId of candidates) {
      this.counters.fitChecks++;
      if (!open.has(nodeId)) continue;
      const n = this.registry.schedulableNode(nodeId);
      if (!n || !fits(t.demand, n.free) || !nodeQualifies(t, n) || !dataFits(needs, n.cache)) continue;
      const rank: NodeRank = {
        nodeId,
        sibling: t.service !== undefined && services?.get(nodeId)?.has(t.service) ? 1 : 0,
        held: needs.length === 0 ? 0 : heldBytes(needs, n.cache!.held),
        free: n.free,
      };
      if (!best || compareNodes(rank, best) < 0) best = { ...rank, free: { ...n.free } };
      if (ordered && c.fresh) break;
    }
    return best?.nodeId;
  }

  /**
   * Writes a round's assignments in one transaction, then sends them: an assignment reaches its
   * node only once it is stored. A task no longer queued in the store (changed meanwhile) is skipped.
   */
  private commit(placed: readonly { taskId: string; nodeId: string; enqueuedAt: number }[]): void {
    const now = this.clock.now();
    const saved: TaskRow[] = [];
    try {
      this.store.transaction(() => {
        // Two masters on PostgreSQL: only the lease holder's assignments are written.
        this.store.assertLeaseHeld();
        for (const a of placed) {
          const row = this.store.updateTask(a.taskId, (t) => {
            if (t.state !== TaskState.TASK_STATE_QUEUED) return false;
            t.state = TaskState.TASK_STATE_ASSIGNED;
            t.nodeId = a.nodeId;
            t.queueReason = '';
            t.lastUpdateSeq = 0;
            t.updatedAt = now;
            return { state: t.state, at: now, nodeId: a.nodeId, attempt: t.attempt, message: '' };
          });
          if (row) saved.push(row);
          else this.registry.dropPending(a.taskId);
        }
      });
    } catch (err) {
      // Nothing was written: the queue is read again from the store, and the pending capacity released.
      for (const a of placed) this.registry.dropPending(a.taskId);
      this.queueState = undefined;
      throw err;
    }
    this.counters.assignments += saved.length;
    const enqueuedAt = new Map(placed.map((a) => [a.taskId, a.enqueuedAt]));
    for (const t of saved) {
      this.log.info({ taskId: t.id, nodeId: t.nodeId, attempt: t.attempt }, 'task assigned');
      this.opts.onPlaced?.(now - enqueuedAt.get(t.id)!);
      this.changed(t);
      this.send(t.nodeId!, { command: { $case: 'assign', value: this.assignmentOf(t) } });
    }
  }

  /** The current queue reason of a demand class, computed from the fleet at most once a second. */
  private reasonOfClass(c: DemandClass, fleet: () => SchedulableNode[] = () => this.registry.schedulable()): QueueReason | undefined {
    const now = this.clock.now();
    const cached = this.reasons.get(c);
    if (cached && now - cached.at < REASON_TTL_MS) return cached.why;
    const why = whyUnplaced({ id: '', ...c.task }, fleet());
    this.reasons.set(c, { at: now, why });
    return why;
  }

  /**
   * The task as shown to users: a queued task's reason is its class's, computed now from the fleet;
   * the row's own (set by an event: rejected by a node, an attempt lost) stands while the fleet
   * gives none (the task fits a node and awaits the next round).
   */
  withQueueReason(t: TaskRow): TaskRow {
    if (t.state !== TaskState.TASK_STATE_QUEUED) return t;
    const e = this.queue.get(t.id);
    const why = e && this.reasonOfClass(e.cls);
    return why && why.reason !== t.queueReason ? { ...t, queueReason: why.reason } : t;
  }

  /** Queued tasks by the code of their class's reason ('placeable': fits a node, awaits a round). */
  queueDepthByReason(): Map<QueueReasonCode | 'placeable', number> {
    const out = new Map<QueueReasonCode | 'placeable', number>();
    let nodes: SchedulableNode[] | undefined;
    const fleet = () => (nodes ??= this.registry.schedulable());
    for (const c of this.queue.allClasses()) {
      const code = this.reasonOfClass(c, fleet)?.code ?? 'placeable';
      out.set(code, (out.get(code) ?? 0) + c.size);
    }
    return out;
  }

  private assignmentOf(t: TaskRow): TaskAssignment {
    return { taskId: t.id, attempt: t.attempt, spec: t.spec, inputSize: t.inputSize, inputSha256: t.inputSha256 };
  }

  private send(nodeId: string, command: NodeCommand): void {
    const sink = this.registry.sink(nodeId);
    if (!sink) return; // the node gets it again when it resubscribes (see reconcile)
    try {
      sink.send(command);
    } catch (err) {
      this.log.warn({ nodeId, err: errorMessage(err) }, 'could not send a command to the node; it is resent on resubscribe');
    }
  }

  /** Throws PreconditionError unless attempt `attempt` of the task is current on `nodeId`. */
  requireCurrent(taskId: string, attempt: number, nodeId: string): TaskRow {
    const task = this.store.getTask(taskId);
    if (!task) throw new NotFoundError(`no task ${echoValue(taskId)}`);
    if (task.attempt !== attempt || task.nodeId !== nodeId) {
      throw new PreconditionError(`attempt ${attempt} of task ${taskId} is superseded (current attempt ${task.attempt}${task.nodeId === nodeId ? '' : ', held by another node'}); stop working on it`);
    }
    return task;
  }

  /**
   * Applies a node's TaskUpdate; idempotent by (task, attempt, seq). What a state may follow is
   * decided in task-transitions.ts: backwards moves are not applied, SUCCEEDED needs the result.
   */
  applyUpdate(node: Pick<NodeRow, 'id' | 'name'>, u: TaskUpdate): TaskUpdateAck {
    // Read once: the update below edits this row in place (nothing is awaited in between).
    const task = this.store.getTask(u.taskId);
    if (!task) throw new NotFoundError(`no task ${echoValue(u.taskId)}`);
    if (task.attempt !== u.attempt || task.nodeId !== node.id) {
      return { applied: false, superseded: true, cancelRequested: false };
    }
    const notApplied = { applied: false, superseded: false, cancelRequested: task.cancelRequested };
    if (u.seq <= task.lastUpdateSeq || isTerminal(task.state)) return notApplied;
    const decision = decideNodeUpdate(task.state, u.state, task.result !== undefined);
    if (decision.kind === 'refuse') {
      const message = `task ${task.id} attempt ${u.attempt}: ${decision.reason}`;
      throw decision.code === 'INVALID_ARGUMENT' ? new InvalidArgumentError(message) : new PreconditionError(message);
    }
    if (decision.kind === 'ignore') {
      this.log.warn({ taskId: task.id, nodeId: node.id, seq: u.seq, state: stateName(u.state) }, `update not applied: ${decision.reason}`);
      return notApplied;
    }
    const now = this.clock.now();
    const ev = (state: TaskState, message: string) => ({ state, at: now, nodeId: node.id, attempt: u.attempt, message });
    let saved: TaskRow | undefined;
    if (u.state === TaskState.TASK_STATE_REJECTED) {
      const reason = `rejected by node ${nodeLabel(node)}: ${u.message || 'no reason given'}`;
      saved = this.store.updateTask(task.id, (t) => {
        t.updatedAt = now;
        if (!t.excludedNodes.includes(node.id)) t.excludedNodes.push(node.id);
        if (t.cancelRequested) {
          this.finish(t, TaskState.TASK_STATE_CANCELLED, { kind: OutcomeKind.OUTCOME_KIND_CANCELLED, message: t.cancelReason || 'cancelled by user' }, now);
        } else {
          // Same attempt number: the attempt never started; the node id fences its late updates.
          t.state = TaskState.TASK_STATE_QUEUED;
          t.nodeId = null;
          t.lastUpdateSeq = 0;
          t.queueReason = reason;
          t.startedAt = null;
          t.replicaStatus = undefined;
          t.progress = undefined;
        }
        return ev(TaskState.TASK_STATE_REJECTED, u.message);
      }, task);
      this.registry.dropPending(task.id);
      this.log.info({ taskId: task.id, nodeId: node.id }, reason);
      this.enqueue(saved);
    } else if (isNodeLiveState(u.state)) {
      saved = this.store.updateTask(task.id, (t) => {
        const stateChanged = t.state !== u.state;
        t.state = u.state;
        t.lastUpdateSeq = u.seq;
        t.updatedAt = now;
        if (u.state === TaskState.TASK_STATE_RUNNING && t.startedAt === null) t.startedAt = now;
        if (u.replica && t.spec.service) t.replicaStatus = u.replica;
        if (u.progress && u.state === TaskState.TASK_STATE_RUNNING) t.progress = u.progress;
        return stateChanged ? ev(u.state, u.message) : null;
      }, task);
      if (saved) this.progress.note(saved.id, saved.state, u.data);
      this.registry.markAccepted(node.id, task.id);
    } else if (isTerminal(u.state)) {
      const outcome = TaskOutcome.fromPartial(u.outcome ?? {});
      if (u.state === TaskState.TASK_STATE_SUCCEEDED && outcome.resultSize === 0 && task.result) {
        // The result the outcome stands for is the stored one (decideNodeUpdate required it).
        outcome.resultSize = task.result.size;
        outcome.resultSha256 = task.result.sha256;
      }
      if (outcome.resultSize > 0) {
        if (!task.result) {
          throw new PreconditionError(`task ${task.id} attempt ${u.attempt}: the outcome names a ${outcome.resultSize}-byte result but none is stored; upload the result before the terminal update`);
        }
        if (task.result.sha256 !== outcome.resultSha256.toLowerCase() || task.result.size !== outcome.resultSize) {
          throw new PreconditionError(`task ${task.id} attempt ${u.attempt}: the outcome's result (${outcome.resultSize} bytes, sha256 ${outcome.resultSha256}) differs from the stored one (${task.result.size} bytes, sha256 ${task.result.sha256})`);
        }
      }
      saved = this.store.updateTask(task.id, (t) => {
        t.lastUpdateSeq = u.seq;
        this.finish(t, u.state, outcome, now);
        return ev(u.state, u.message || outcome.message);
      }, task);
      this.registry.dropPending(task.id);
      this.stopUploadOfFinished(task.id);
      this.log.info({ taskId: task.id, nodeId: node.id, state: stateName(u.state) }, 'task finished');
      this.scheduleSoon();
    }
    this.changed(saved);
    return { applied: true, superseded: false, cancelRequested: saved?.cancelRequested ?? false };
  }

  private finish(t: TaskRow, state: TaskState, outcome: Partial<TaskOutcome>, now: number): void {
    t.state = state;
    t.outcome = TaskOutcome.fromPartial(outcome);
    t.finishedAt = now;
    t.updatedAt = now;
    t.queueReason = '';
  }

  /**
   * Cancels a task: a queued one at once; one held by a node gets cancel_requested and a cancel
   * command (the node reports the terminal state). Terminal tasks are returned unchanged.
   */
  cancel(taskId: string, reason: string): TaskRow {
    const now = this.clock.now();
    const message = reason || 'cancelled by user';
    let notify: TaskRow | undefined;
    const saved = this.store.updateTask(taskId, (t) => {
      if (isTerminal(t.state)) return false;
      if (t.state === TaskState.TASK_STATE_QUEUED) {
        this.finish(t, TaskState.TASK_STATE_CANCELLED, { kind: OutcomeKind.OUTCOME_KIND_CANCELLED, message }, now);
        return { state: t.state, at: now, nodeId: null, attempt: t.attempt, message };
      }
      if (t.cancelRequested) return false;
      t.cancelRequested = true;
      t.cancelReason = message;
      t.updatedAt = now;
      notify = t;
      return { state: t.state, at: now, nodeId: t.nodeId, attempt: t.attempt, message: `cancel requested: ${message}` };
    });
    if (saved && !notify) this.queue.remove(taskId);
    if (notify?.nodeId) this.send(notify.nodeId, { command: { $case: 'cancel', value: { taskId, attempt: notify.attempt, reason: message } } });
    if (saved) {
      this.changed(saved);
      return saved;
    }
    const t = this.store.getTask(taskId);
    if (!t) throw new NotFoundError(`no task ${echoValue(taskId)}`);
    return t;
  }

  /**
   * Gives up the current attempt of a task held by a node that lost it: requeue with attempt+1,
   * or FAILED/NODE_LOST once max_attempts is used up (CANCELLED if a cancel was pending).
   */
  giveUpAttempt(taskId: string, why: string): void {
    const now = this.clock.now();
    const upload = this.uploads.get(taskId);
    let gaveUp = false;
    const saved = this.store.updateTask(taskId, (t) => {
      if (isTerminal(t.state) || t.state === TaskState.TASK_STATE_QUEUED) return false;
      gaveUp = true;
      const lostNode = t.nodeId;
      const lostAttempt = t.attempt;
      t.result = undefined;
      if (t.cancelRequested) {
        this.finish(t, TaskState.TASK_STATE_CANCELLED, { kind: OutcomeKind.OUTCOME_KIND_CANCELLED, message: `${t.cancelReason}; ${why}` }, now);
      } else if (t.attempt >= t.maxAttempts && !t.spec.service) {
        // A service replica is requeued however often its node is lost (see master.ts): a lost
        // node says nothing about the replica, and the service must not lose it for good.
        this.finish(t, TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_NODE_LOST, message: `${why}; gave up after ${t.attempt} of ${t.maxAttempts} attempts` }, now);
      } else {
        t.attempt += 1;
        t.state = TaskState.TASK_STATE_QUEUED;
        t.nodeId = null;
        t.lastUpdateSeq = 0;
        t.startedAt = null;
        t.replicaStatus = undefined;
        t.progress = undefined;
        t.queueReason = `attempt ${lostAttempt} lost: ${why}`;
        t.updatedAt = now;
      }
      return { state: t.state, at: now, nodeId: lostNode, attempt: lostAttempt, message: why };
    });
    if (!gaveUp) return;
    this.registry.dropPending(taskId);
    if (upload) upload.abort();
    // The old attempt's bytes must never be mistaken for the new attempt's result.
    this.blobs.discardResult(taskId).catch((err) => this.log.warn({ taskId, err: errorMessage(err) }, 'could not discard a superseded result'));
    this.log.warn({ taskId, attempt: saved?.attempt, state: saved && stateName(saved.state) }, `attempt given up: ${why}`);
    this.changed(saved);
    this.enqueue(saved);
  }

  /**
   * A node went offline: every attempt it held is given up. A node that was only frozen or cut
   * off may come back on its old streams without resubscribing, so no reconcile would stop what it
   * still runs: a cancel of each attempt waits on its command stream (if it still has one).
   */
  nodeLost(nodeId: string, why?: string): number {
    const node = this.store.getNode(nodeId);
    const label = node ? nodeLabel(node) : nodeId;
    const live = this.store.liveTasksOfNode(nodeId);
    for (const t of live) {
      const reason = `node ${label} ${why ?? `went offline (no report for ${this.registry.offlineAfterMs} ms)`}`;
      this.giveUpAttempt(t.id, reason);
      this.send(nodeId, { command: { $case: 'cancel', value: { taskId: t.id, attempt: t.attempt, reason: `attempt ${t.attempt} was given up: ${reason}` } } });
    }
    return live.length;
  }

  /**
   * A node (re)opened its command stream listing the tasks it still holds: resend assignments
   * it never got, repeat pending cancels, give up attempts it no longer has, and tell it to drop
   * attempts that are no longer current. `running` is validated and bounded by the node's slots
   * (node-input-validation.ts); the listed tasks the master does not hold on this node are looked
   * up in one query, and ids the master never issued cost nothing but a count in the log.
   */
  reconcile(node: Pick<NodeRow, 'id' | 'name'>, running: readonly RunningTask[]): void {
    const held = new Map(running.map((r) => [r.taskId, r.attempt]));
    for (const t of this.store.liveTasksOfNode(node.id)) {
      const listed = held.get(t.id) === t.attempt;
      held.delete(t.id);
      if (listed) {
        if (t.cancelRequested) this.send(node.id, { command: { $case: 'cancel', value: { taskId: t.id, attempt: t.attempt, reason: t.cancelReason } } });
      } else if (t.state === TaskState.TASK_STATE_ASSIGNED) {
        this.send(node.id, { command: { $case: 'assign', value: this.assignmentOf(t) } });
      } else {
        this.giveUpAttempt(t.id, `node ${nodeLabel(node)} no longer holds attempt ${t.attempt} (it was ${stateName(t.state)})`);
      }
    }
    if (held.size === 0) return;
    const known = new Map(this.store.taskPlacements([...held.keys()]).map((t) => [t.id, t]));
    for (const [taskId, attempt] of held) {
      const t = known.get(taskId);
      if (!t) continue;
      // A finished current attempt is only waiting for its update ack; the resend is answered.
      if (t.nodeId === node.id && t.attempt === attempt && isTerminal(t.state)) continue;
      this.send(node.id, { command: { $case: 'cancel', value: { taskId, attempt, reason: `attempt ${attempt} is superseded at the master` } } });
    }
    const unknown = held.size - known.size;
    if (unknown > 0) this.log.warn({ nodeId: node.id, unknown }, 'the node listed tasks this master never issued; ignored');
  }

  /**
   * Records a verified result of the current attempt. Refused (the caller discards the file) when
   * the attempt was given up meanwhile, or the task already ended: a result that arrives after its
   * task's terminal state is late work, never served.
   */
  resultStored(taskId: string, attempt: number, nodeId: string, result: { size: number; sha256: string }): 'stored' | 'superseded' | 'finished' {
    const now = this.clock.now();
    let refusal: 'superseded' | 'finished' = 'superseded';
    const saved = this.store.updateTask(taskId, (t) => {
      if (t.attempt !== attempt || t.nodeId !== nodeId) return false;
      if (isTerminal(t.state)) {
        refusal = 'finished';
        return false;
      }
      t.result = result;
      t.updatedAt = now;
      return null;
    });
    this.changed(saved);
    return saved ? 'stored' : refusal;
  }

  /** A task ended while its result was still uploading: stop the upload and drop its bytes. */
  private stopUploadOfFinished(taskId: string): void {
    const upload = this.uploads.get(taskId);
    if (!upload) return;
    upload.abort();
    this.blobs.discardResult(taskId).catch((err) => this.log.warn({ taskId, err: errorMessage(err) }, 'could not discard the partial result of a finished task'));
  }

  /** Claims the single upload slot of a task; the returned function releases it. */
  beginUpload(taskId: string, attempt: number, abort: () => void): () => void {
    if (this.uploads.has(taskId)) throw new PreconditionError(`another result upload of task ${taskId} is in progress; retry when it ends`);
    const entry = { attempt, abort };
    this.uploads.set(taskId, entry);
    return () => {
      if (this.uploads.get(taskId) === entry) this.uploads.delete(taskId);
    };
  }

  close(): void {
    this.closed = true;
    for (const u of this.uploads.values()) u.abort();
  }
}

/** A binary min-heap of demand classes by the age of their head (submission time, then queue order). */
class ClassHeap {
  private readonly a: { c: DemandClass; at: number; seq: number }[] = [];

  get size(): number {
    return this.a.length;
  }

  push(c: DemandClass): void {
    const h = c.peek();
    if (!h) return;
    const a = this.a;
    a.push({ c, at: h.createdAt, seq: h.seq });
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!less(a[i]!, a[up]!)) break;
      [a[i], a[up]] = [a[up]!, a[i]!];
      i = up;
    }
  }

  pop(): DemandClass | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && less(a[l]!, a[m]!)) m = l;
        if (r < a.length && less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top?.c;
  }
}

function less(x: { at: number; seq: number }, y: { at: number; seq: number }): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}
