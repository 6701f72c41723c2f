// The master's services: creates, scales and removes them, and keeps each one's replicas alive.
// A replica is an ordinary task with spec.service set; the reconciler (replica-plan.ts decides)
// gives every wanted index one live task, replaces one that ended (with backoff), hands a replica
// over from a node that stops accepting tasks (a surge elsewhere first, the old one cancelled once
// the surge is healthy) and cancels the ones no longer wanted. It runs on every replica task
// change and on a timer.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { echoValue } from '../common/echo-value.js';
import { NotFoundError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CreateServiceRequest } from '../protocol/gen/hivemind/v1/admin.js';
import { TaskState } from '../protocol/gen/hivemind/v1/common.js';
import { parseDigest } from '../protocol/data-rules.js';
import { AlreadyExistsError, PreconditionError, ResourceExhaustedError } from './master-errors.js';
import type { MasterEvents } from './master-events.js';
import { planReplicas, type HandoverMemo, type IndexBackoff } from './replica-plan.js';
import { replicaSpec, validateGraceMs, validateReplicas, validateServiceName, validateServiceSpec } from './service-rules.js';
import type { ServiceRow, ServiceStore } from './service-store.js';
import { isTerminal, type TaskRow } from './store-rows.js';
import { resolveTaskData, type HeldDataLookup } from './task-data-mounts.js';

/** What the manager reads and writes of services (ServiceStore). */
/** How many services a master holds at most (with 64 replicas each at most). */
export const MAX_SERVICES = 1000;

export type ServiceRecords = Pick<ServiceStore, 'insertService' | 'getService' | 'serviceCount' | 'serviceNames' | 'setReplicas' | 'markRemoving' | 'deleteService' | 'replicaTasks'>;

/** Where replica tasks go: stored, announced and scheduled like submitted tasks (TaskManager). */
export interface ReplicaTaskSink {
  insert(task: TaskRow): void;
  cancel(taskId: string, reason: string): void;
}

/** Which nodes are leaving: online but not accepting tasks (paused or draining), per NodeRegistry. */
export interface NodeAcceptance {
  isLeaving(nodeId: string): boolean;
}

export interface ServiceManagerDeps {
  services: ServiceRecords;
  nodes: NodeAcceptance;
  replicas: ReplicaTaskSink;
  /** The data sets the master holds and the task references that keep them (DataStore). */
  data: HeldDataLookup & { addTaskReference(taskId: string, sha256Hex: string, path: string): void };
  maxDataBytes: number;
  clock: Clock;
  log: Logger;
  /** How often every service is reconciled besides on task changes. Default 1 000 ms. */
  reconcileIntervalMs?: number;
  /** Told when a service is gone (the gateway drops its counters: a new one of that name starts at 0). */
  onRemoved?(name: string): void;
}

export class ServiceManager {
  private readonly backoff = new Map<string, Map<number, IndexBackoff>>();
  private readonly handovers = new Map<string, Map<string, HandoverMemo>>();
  /** The last reason a replica task could not be made, per service: logged once, not per pass. */
  private readonly createErrors = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private flushQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly d: ServiceManagerDeps) {}

  /** Reconciles on every replica task change and on the timer; call once. */
  start(events: MasterEvents): void {
    const onTask = (t: TaskRow) => {
      if (t.spec.service?.service) this.reconcileSoon(t.spec.service.service);
    };
    events.on('task', onTask);
    this.unsubscribe = () => events.off('task', onTask);
    this.timer = setInterval(() => this.reconcileAll(), this.d.reconcileIntervalMs ?? 1000);
    this.timer.unref();
    this.reconcileAll();
  }

  create(req: CreateServiceRequest): ServiceRow {
    const name = validateServiceName(req.name);
    const graceMs = validateGraceMs(req.graceMs);
    const replicas = validateReplicas(req.replicas, true);
    const checked = validateServiceSpec(req.spec, graceMs);
    // Resolved now (a quick refusal of a data set the master lacks) and again for every replica task.
    const spec = { ...checked, data: resolveTaskData(checked.data, this.d.data, this.d.maxDataBytes) };
    const row: ServiceRow = { name, spec, replicas, public: req.public, graceMs, createdAt: this.d.clock.now(), removing: false };
    // Each service costs a reconcile pass every second and up to 64 replica tasks: bounded.
    if (this.d.services.serviceCount() >= MAX_SERVICES && !this.d.services.getService(name)) {
      throw new ResourceExhaustedError(`the master holds ${MAX_SERVICES} services, its limit; remove one first (\`hivemind service rm\`)`);
    }
    if (!this.d.services.insertService(row)) {
      throw new AlreadyExistsError(`a service named ${name} exists already; scale it (\`hivemind service scale\`) or remove it first`);
    }
    this.d.log.info({ service: name, replicas, public: row.public, image: spec.image }, 'service created');
    this.reconcile(name);
    return row;
  }

  get(name: string): ServiceRow {
    const s = this.d.services.getService(name);
    if (!s) throw new NotFoundError(`no service ${echoValue(name)}`);
    return s;
  }

  scale(name: string, replicas: number): ServiceRow {
    const s = this.get(name);
    const n = validateReplicas(replicas, false);
    if (s.removing) throw new PreconditionError(`service ${name} is being removed; it cannot be scaled`);
    this.d.services.setReplicas(name, n);
    this.d.log.info({ service: name, from: s.replicas, to: n }, 'service scaled');
    this.reconcile(name);
    return { ...s, replicas: n };
  }

  /** Stops every replica (each within the service's grace) and deletes the service once none is live. */
  remove(name: string): ServiceRow {
    const s = this.get(name);
    if (!s.removing) {
      this.d.services.markRemoving(name);
      this.d.log.info({ service: name }, 'service removal requested');
    }
    this.reconcile(name);
    return { ...s, removing: true };
  }

  /** The service's live replica tasks and the latest task of each index. */
  replicaTasks(name: string): TaskRow[] {
    return this.d.services.replicaTasks(name);
  }

  private reconcileSoon(name: string): void {
    if (this.closed) return;
    this.dirty.add(name);
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      const names = [...this.dirty];
      this.dirty.clear();
      for (const n of names) this.reconcileSafely(n);
    });
  }

  reconcileAll(): void {
    if (this.closed) return;
    let names: string[];
    try {
      names = this.d.services.serviceNames();
    } catch (err) {
      this.d.log.error({ err: errorMessage(err) }, 'listing services failed');
      return;
    }
    for (const n of names) this.reconcileSafely(n);
  }

  private reconcileSafely(name: string): void {
    try {
      this.reconcile(name);
    } catch (err) {
      this.d.log.error({ service: name, err: errorMessage(err) }, 'reconciling a service failed');
    }
  }

  /** One pass over one service: see replica-plan.ts for what is decided. */
  reconcile(name: string): void {
    if (this.closed) return;
    const s = this.d.services.getService(name);
    if (!s) {
      this.backoff.delete(name);
      this.handovers.delete(name);
      return;
    }
    const tasks = this.d.services.replicaTasks(name);
    const plan = planReplicas(
      s,
      tasks.map((t) => ({
        id: t.id, index: t.spec.service!.replica, state: t.state, cancelRequested: t.cancelRequested, createdAt: t.createdAt,
        startedAt: t.startedAt, finishedAt: t.finishedAt, nodeId: t.nodeId, excludedNodes: t.excludedNodes,
        healthy: t.state === TaskState.TASK_STATE_RUNNING && (t.replicaStatus?.healthy ?? false),
      })),
      this.backoff.get(name) ?? new Map(),
      this.d.clock.now(),
      { leaving: (nodeId) => this.d.nodes.isLeaving(nodeId), memos: this.handovers.get(name) ?? new Map() },
    );
    this.backoff.set(name, plan.backoff);
    this.handovers.set(name, plan.handovers);
    for (const c of plan.cancel) this.d.replicas.cancel(c.taskId, c.reason);
    for (const index of plan.create) this.createReplica(s, index);
    for (const h of plan.surge) {
      const id = this.createReplica(s, h.index, [h.avoidNode]);
      if (id) this.d.log.info({ service: name, replica: h.index, from: h.replaces, surge: id, avoidNode: h.avoidNode }, 'handing a replica over: its node stopped accepting tasks');
    }
    // A queued replica is cancelled at once: with nothing else live, the service goes in this pass.
    const gone = plan.gone || (s.removing && plan.cancel.length > 0 && this.d.services.replicaTasks(name).every((t) => isTerminal(t.state)));
    if (gone) {
      this.d.services.deleteService(name);
      this.backoff.delete(name);
      this.handovers.delete(name);
      this.createErrors.delete(name);
      this.d.onRemoved?.(name);
      this.d.log.info({ service: name }, 'service removed');
    }
  }

  /** Stores a new replica task of `index`, kept off `excludedNodes`; its id, or undefined when it could not be made. */
  private createReplica(s: ServiceRow, index: number, excludedNodes: string[] = []): string | undefined {
    let spec;
    try {
      // Data sets are looked up again: sizes as held now, and a removed one is reported, not mounted.
      spec = replicaSpec(s.name, { ...s.spec, data: resolveTaskData(s.spec.data, this.d.data, this.d.maxDataBytes) }, index, s.graceMs);
    } catch (err) {
      const message = errorMessage(err);
      if (this.createErrors.get(s.name) !== message) this.d.log.error({ service: s.name, replica: index, err: message }, 'cannot start a replica');
      this.createErrors.set(s.name, message);
      return undefined;
    }
    this.createErrors.delete(s.name);
    const id = randomBytes(8).toString('hex');
    const now = this.d.clock.now();
    const row: TaskRow = {
      id, spec, state: TaskState.TASK_STATE_QUEUED, attempt: 1,
      // No attempt limit: a lost node requeues a replica however often (task-manager.ts).
      maxAttempts: 0,
      nodeId: null, queueReason: 'waiting to be scheduled', outcome: undefined, inputSize: 0, inputSha256: '',
      result: undefined, cancelRequested: false, cancelReason: '', createdAt: now, updatedAt: now, startedAt: null,
      finishedAt: null, lastUpdateSeq: 0, excludedNodes,
    };
    this.d.replicas.insert(row);
    for (const m of spec.data) if (!m.url) this.d.data.addTaskReference(id, parseDigest(m.sha256, 'sha256'), m.path);
    this.d.log.info({ service: s.name, replica: index, taskId: id }, 'replica task created');
    return id;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe?.();
  }
}
