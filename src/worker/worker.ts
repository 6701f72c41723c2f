// The worker agent: registers with the master, reports resources, takes task assignments
// from the command stream and runs each one (input download, executor, result upload) under
// its own AbortController. Every task update goes through the SQLite outbox, so a master
// outage never loses one and never kills a running task. This class keeps the public API
// (start, pause, resume, drain, close, the events) and the command handling; the parts that do
// the work (the master session, the outbox, recovery after a restart, the reporter and the
// reclaimer) are put together in worker-composition.ts.
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { closeSteps } from '../common/close-steps.js';
import { ConfigError, HivemindError, InvalidTaskError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { sleep } from '../common/sleep.js';
import { checkTaskSpec } from '../protocol/task-spec-rules.js';
import { isolationName, offersIsolation } from '../protocol/isolation-rules.js';
import { describeLimits, limitsNotHeld, limitsSetBy } from '../protocol/limit-rules.js';
import { TaskState, type Capacity, type TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { NodeCommand, TaskAssignment, TaskUpdate, TaskUpdateAck } from '../protocol/gen/hivemind/v1/node.js';
import { fitAssignment, freeCapacity, type NodeBudget, type Reservation } from './fit.js';
import { assertNotRemoved, loadIdentity, saveRemoval, type NodeIdentity } from './identity-file.js';
import { Lifecycle, type LifecycleChange, type LifecycleState } from './lifecycle.js';
import { LogForwarder } from './log-forwarder.js';
import type { MasterSession } from './master-session.js';
import type { MasterConnection } from './master-connection.js';
import type { Outbox } from './outbox.js';
import type { Reporter } from './reporter.js';
import type { Reclaimer } from './reclaimer.js';
import { ActiveTasks } from './active-tasks.js';
import { RunningTask, type TaskRunDeps } from './running-task.js';
import type { Recovery } from './recovery.js';
import { dataRefusal } from './task-data.js';
import type { HostFacts } from './resources/resource-probe.js';
import type { AbortReason, DataCacheView, ReplicaView, WorkerEvents } from './contracts.js';
import type { GatewayPipeCounters } from './gateway-pipe-server.js';
import { NodeServices } from './node-services.js';
import { ExecSessions, type ExecCounters } from './exec-sessions.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './worker-options.js';
import { composeWorker, nodeBudget, type WorkerDeps } from './worker-composition.js';

export type { WorkerDeps } from './worker-composition.js';

export class WorkerStateError extends HivemindError {
  constructor(message: string) {
    super('WORKER_STATE', message);
  }
}

export class Worker extends EventEmitter<WorkerEvents> {
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;
  private readonly outbox: Outbox;
  private readonly master: MasterSession;
  private readonly reporter: Reporter;
  private readonly reclaimer: Reclaimer;
  private readonly taskRunDeps: TaskRunDeps;
  private readonly drop: (digests: readonly string[]) => void;
  private readonly recovery: Recovery;
  private readonly active: ActiveTasks<RunningTask>;
  /** Whether this node hosts service replicas, and its gateway pipe. */
  private readonly services: NodeServices;
  /** Exec sessions into this node's running tasks (`hivemind exec`). */
  private readonly execs: ExecSessions;
  private drainPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;
  private closing = false;
  /** Paused by the operator: running tasks go on, new ones are refused. */
  private paused = false;
  private lastChange: LifecycleChange | undefined;
  readonly startedAt: number;

  static async create(raw: WorkerOptions, deps: WorkerDeps): Promise<Worker> {
    const options = compileWorkerOptions(raw);
    await assertNotRemoved(options.dataDir);
    const identity = await loadIdentity(options.dataDir);
    if (!identity && !options.enrollmentToken) {
      throw new ConfigError(`this node has no identity yet (${options.dataDir}/identity.json): pass an enrollment token for its first registration`);
    }
    await mkdir(options.spoolDir, { recursive: true });
    const host = await deps.probe.facts();
    return new Worker(options, deps, host, nodeBudget(options, host), identity);
  }

  private constructor(
    readonly options: CompiledWorkerOptions,
    private readonly deps: WorkerDeps,
    private readonly host: HostFacts,
    readonly budget: NodeBudget,
    identity: NodeIdentity | undefined,
  ) {
    super();
    this.log = deps.logger.child({ component: 'worker', ...(identity ? { nodeId: identity.nodeId } : {}) });
    this.lifecycle = new Lifecycle(this.log);
    this.active = new ActiveTasks(this.log);
    const parts = composeWorker(
      { options, deps, host, budget, identity, log: this.log, lifecycle: this.lifecycle, active: this.active, events: this },
      {
        status: () => ({ free: this.freeCapacity(), accepting: this.accepting, lifecycleState: this.state }),
        runningTasks: () => this.runningTasks(),
        onCommand: (cmd) => this.onCommand(cmd),
        onRemoved: (reason) => this.onRemoved(reason),
        onUpdateAck: (update, ack) => this.onUpdateAck(update, ack),
        takeUp: (assignment, reservation) => this.startLoop(this.activate(assignment, reservation), true),
      },
    );
    this.master = parts.master;
    this.outbox = parts.outbox;
    this.reporter = parts.reporter;
    this.reclaimer = parts.reclaimer;
    this.recovery = parts.recovery;
    this.taskRunDeps = parts.taskRunDeps;
    this.drop = parts.dropData;
    this.services = new NodeServices(options.services, parts.gatewayPipe, deps.executor, this.log);
    const exec = deps.executor.exec?.bind(deps.executor);
    this.execs = new ExecSessions({
      allowed: options.exec,
      logger: this.log,
      clock: deps.clock,
      task: (taskId, attempt) => this.execTarget(taskId, attempt),
      exec,
      openChannel: () => (this.master.session?.ready ? this.master.session.conn.execSession() : undefined),
      recorder: {
        started: (r) => deps.store.insertExecSession(r),
        ended: (id, end) => deps.store.endExecSession(id, end),
      },
    });
    this.startedAt = deps.clock.now();
    this.lifecycle.on('change', (c) => {
      this.lastChange = c;
      this.emit('state-changed', c);
    });
  }

  get state(): LifecycleState {
    return this.lifecycle.state;
  }

  get nodeId(): string | undefined {
    return this.master.nodeId;
  }

  /** The master in use or being tried now (of the several a node may know). */
  get masterAddress(): string {
    return this.master.masterAddress;
  }

  /** Whether new assignments are taken (false while paused, draining or closing). */
  get accepting(): boolean {
    return !this.paused && !this.closing && this.lifecycle.is('starting', 'registering', 'connected', 'reconnecting');
  }

  /** Hardware and software facts probed at start (hostname, Docker version, GPUs ...). */
  get hostFacts(): HostFacts {
    return this.host;
  }

  /** The node's data cache, read-only (undefined when the worker runs without one). */
  get dataCache(): DataCacheView | undefined {
    const cache = this.deps.dataCache;
    return cache ? { stats: () => cache.stats(), list: () => cache.list() } : undefined;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** The reason given with the latest lifecycle transition (e.g. why the master is unreachable). */
  get stateReason(): string | undefined {
    return this.lastChange?.reason;
  }

  /**
   * Stops taking new tasks; running ones go on. The master hears it at once through a report,
   * so it places nothing more here. Unlike drain() this is reversible and does not stop the node.
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.log.info('paused: new tasks are refused until resumed');
    this.emit('accepting-changed', this.accepting);
    this.reporter.reportNow();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.log.info('resumed: taking new tasks');
    this.emit('accepting-changed', this.accepting);
    this.reporter.reportNow();
  }

  /** Cancels a running task on this node's own authority (the operator's). False if not running here. */
  cancelTask(taskId: string): boolean {
    const running = this.active.isRunning(taskId);
    if (running) this.active.abort(taskId, 0, 'cancelled');
    return running;
  }

  /**
   * Runs `fn` on a live session to the master, waiting for one and retrying transient failures
   * (what the data cache's source fetches through).
   */
  withMaster<T>(signal: AbortSignal, what: string, fn: (conn: MasterConnection) => Promise<T>): Promise<T> {
    return this.master.withMaster(signal, what, fn);
  }

  /** Data sets ("sha256:…") the master removed: dropped from the cache once no task holds them. */
  dropData(digests: readonly string[]): void {
    this.drop(digests);
  }

  /** The current tunnel status, or undefined without a tunnel. */
  async tunnelStatus(): Promise<TunnelStatus | undefined> {
    return this.deps.tunnel?.status();
  }

  /** The service replicas running here and their latest status (for the monitor). */
  replicas(): ReplicaView[] {
    return this.active.list().flatMap((t) => (t.replica ? [t.replica] : []));
  }

  /** The gateway pipe's port and counters while it listens; undefined when this node hosts no services. */
  get gateway(): { port: number; counters: GatewayPipeCounters } | undefined {
    return this.services.gateway;
  }

  /** Exec sessions started, refused and open now (for the monitor's metrics). */
  get execCounters(): ExecCounters {
    return this.execs.counters;
  }

  /**
   * A running attempt as an exec session sees it: its signal aborts when the task is stopped or its
   * run ends, whichever comes first, so that a session never outlives its task.
   */
  private execTarget(taskId: string, attempt: number): { signal: AbortSignal } | undefined {
    const task = this.active.get(taskId, attempt);
    if (!task || task.aborted) return undefined;
    const ended = new AbortController();
    void task.done.finally(() => ended.abort('ended'));
    return { signal: AbortSignal.any([task.signal, ended.signal]) };
  }

  runningTasks(): { taskId: string; attempt: number }[] {
    return this.active.list().map((t) => ({ taskId: t.taskId, attempt: t.attempt }));
  }

  freeCapacity(): Capacity {
    return freeCapacity(this.budget, this.active.reservations());
  }

  /**
   * Settles interrupted tasks from a previous run, starts reporting and connects. Resolves
   * once connected, or once the first attempt failed in a retryable way (the worker keeps
   * retrying in the background); rejects when the master refuses this node for good (bad
   * token or credential).
   */
  async start(): Promise<void> {
    if (!this.lifecycle.is('starting') || this.master.started) throw new WorkerStateError(`start() called in state '${this.state}'`);
    this.recovery.recoverInterruptedTasks();
    this.reporter.schedule();
    this.reclaimer.start();
    // Before subscribing: the subscription offers the pipe only when it listens.
    await this.services.open();
    await this.master.start();
  }

  // ---------------------------------------------------------------- from the master session

  /**
   * Removed by the master's operator: its tasks were requeued there, so the ones running here are
   * cancelled; the data dir is marked so that no later start talks to that master with it again.
   */
  private async onRemoved(reason: string): Promise<void> {
    this.log.error({ reason }, 'this node was removed from the master; it stops taking and running tasks');
    this.cancelAll('shutdown');
    await saveRemoval(this.options.dataDir, {
      nodeId: this.master.nodeId ?? '',
      masterAddress: this.master.masterAddress,
      at: this.deps.clock.now(),
      reason,
    }).catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'cannot record the removal in the data dir'));
    this.emit('removed', reason);
  }

  // ---------------------------------------------------------------- outbox acks

  private onUpdateAck(update: TaskUpdate, ack: TaskUpdateAck): void {
    if (ack.superseded) this.active.abort(update.taskId, update.attempt, 'superseded');
    else if (ack.cancelRequested) this.active.abort(update.taskId, update.attempt, 'cancelled');
  }

  // ---------------------------------------------------------------- commands

  private onCommand(cmd: NodeCommand): void {
    const c = cmd.command;
    try {
      switch (c?.$case) {
        case 'assign':
          this.onAssign(c.value);
          break;
        case 'cancel':
          this.log.info({ taskId: c.value.taskId, attempt: c.value.attempt, reason: c.value.reason }, 'cancel requested by the master');
          this.active.abort(c.value.taskId, c.value.attempt, 'cancelled');
          break;
        case 'ping':
          break;
        case 'exec':
          this.execs.open(c.value);
          break;
        case 'dropData':
          // Removed at the master: dropped from the cache once no task of this node holds them.
          this.drop(c.value.sha256);
          break;
        case 'meshPeers':
          this.deps.tunnel?.setMeshPeers(c.value).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'applying mesh peers failed'));
          break;
        default:
          this.log.warn('unknown command from the master; ignoring (is the worker older than the master?)');
      }
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'handling a master command failed');
    }
  }

  private onAssign(a: TaskAssignment): void {
    const log = this.log.child({ taskId: a.taskId, attempt: a.attempt });
    if (this.active.has(a.taskId, a.attempt)) {
      log.debug('assignment resent for a task already running; ignoring');
      return;
    }
    const known = this.deps.store.getTask(a.taskId, a.attempt);
    if (known && known.state !== TaskState.TASK_STATE_REJECTED) {
      // Finished, or its result still uploading after a restart: the master has not heard
      // the end yet and the outbox will tell it. Running it again would duplicate work.
      log.debug('assignment resent for a task this node already took; ignoring');
      this.outbox.kick();
      return;
    }
    if (!a.spec) return this.reject(a, 'the assignment has no task spec');
    // The master checks specs at submission by these same rules; an older or hostile master may
    // still send one no node can run: refused here with the reason, before any work or reservation.
    const invalid = specProblem(a.spec);
    if (invalid) return this.reject(a, invalid);
    if (!offersIsolation(a.spec.isolation, this.options.isolations)) {
      return this.reject(a, `this node does not offer ${isolationName(a.spec.isolation!)} isolation (it offers ${this.options.isolations.map(isolationName).join(', ')})`);
    }
    // A stale or hostile master may send a task whose limits this node's engine would silently
    // drop (rootless Podman on cgroup v1): refused, never run unbounded.
    const dropped = limitsNotHeld(limitsSetBy(a.spec.limits), this.options.unenforcedLimits);
    if (dropped.length > 0) {
      return this.reject(a, `this node's engine (${this.options.engine}) cannot enforce the task's ${describeLimits(dropped)} limit${dropped.length > 1 ? 's' : ''}; it would run unbounded, so it is refused`);
    }
    const noServices = a.spec.service ? this.services.refusalReason : undefined;
    if (noServices) return this.reject(a, noServices);
    if (this.paused && !this.closing) return this.reject(a, 'node is paused by its operator');
    if (!this.accepting) return this.reject(a, 'node is draining');
    const fit = fitAssignment(a.spec.limits, this.budget, this.active.reservations());
    if (!fit.ok) return this.reject(a, fit.reason);
    const noData = dataRefusal(a, this.deps.dataCache);
    if (noData) return this.reject(a, noData);

    this.deps.store.insertTask(a, fit.gpuIndexes, this.deps.clock.now());
    log.info({ image: a.spec.image, gpus: fit.gpuIndexes }, 'task accepted');
    const task = this.activate(a, fit.reservation);
    this.outbox.append(task, TaskState.TASK_STATE_ACCEPTED);
    this.startLoop(task, false);
  }

  /** The in-memory side of a task this node holds: its abort controller, reservation and log forwarder. */
  private activate(a: TaskAssignment, reservation: Reservation): RunningTask {
    const logs = new LogForwarder({
      taskId: a.taskId,
      attempt: a.attempt,
      clock: this.deps.clock,
      flushMs: this.options.logFlushMs,
      maxBufferedBytes: this.options.logBufferBytes,
      openSink: () => (this.master.session?.ready ? this.master.session.conn.pushLogs(a.taskId, a.attempt) : undefined),
      // Where a reattaching worker picks the live log up after a crash.
      onSent: (atNs) => {
        try {
          this.deps.store.setLogsSentUntil(a.taskId, a.attempt, atNs);
        } catch (err) {
          this.log.warn({ taskId: a.taskId, attempt: a.attempt, err: errorMessage(err) }, 'cannot record how far the live log reached');
        }
      },
    });
    const task = new RunningTask(a, reservation, logs, this.taskRunDeps);
    this.active.add(task);
    return task;
  }

  private startLoop(task: RunningTask, recovered: boolean): void {
    this.active.track(task, task.run(recovered).catch((err) => this.log.error({ taskId: task.taskId, attempt: task.attempt, err: errorMessage(err) }, 'task loop failed')));
  }

  private reject(a: TaskAssignment, reason: string): void {
    this.log.info({ taskId: a.taskId, attempt: a.attempt, reason }, 'task rejected');
    this.deps.store.insertTask(a, [], this.deps.clock.now());
    this.outbox.append(a, TaskState.TASK_STATE_REJECTED, { message: reason });
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Stops taking tasks (assignments are rejected with "node is draining") and tells the master at
   * once (a report with accepting=false), waits for the running batch tasks up to drainTimeoutMs,
   * then aborts the rest with reason 'shutdown'. Service replicas keep running meanwhile, so the
   * master can hand them over (start each elsewhere, then cancel it here) with no gap; those not
   * handed over are stopped once handoverWaitMs has passed and no batch task is left: a lone node
   * does not wait its whole drain timeout for replicas that never end. The gateway pipe closes
   * just before they are stopped, so no new connection reaches a replica being stopped.
   */
  drain(): Promise<void> {
    this.drainPromise ??= (async () => {
      if (!this.lifecycle.is('draining', 'stopped')) this.lifecycle.transition('draining', 'drain requested');
      this.reporter.reportNow();
      await this.active.drain(this.options.drainTimeoutMs, {
        picks: (t) => t.isReplica,
        waitMs: this.options.handoverWaitMs,
        beforeStop: () => this.services.close(),
      });
    })();
    return this.drainPromise;
  }

  /**
   * Cancels every running task now, with the given reason (a second SIGTERM: 'shutdown').
   * Their terminal updates still go through the outbox; drain()/close() then finish quickly.
   */
  cancelAll(reason: AbortReason = 'shutdown'): void {
    this.active.cancelAll(reason);
  }

  /** Idempotent. Each step runs even if an earlier one failed. */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      const step = closeSteps((name, err) => this.log.error({ err: errorMessage(err), step: name }, 'close step failed'));
      await step('stop taking tasks', () => {
        this.closing = true;
        this.reclaimer.stop();
      });
      // The pipe stays open while the drain waits: replicas serve until the master hands them over
      // (drain() closes it before stopping the ones left).
      await step('drain tasks', () => this.drain());
      await step('end exec sessions', () => this.execs.closeAll('the node is shutting down'));
      await step('close the gateway pipe', () => this.services.close());
      await step('deliver the outbox', () => this.deliverOutboxBriefly(2_000));
      await step('stop reports', () => this.reporter.stop());
      await step('close the master session', async () => {
        await this.master.close();
        await this.outbox.settled();
      });
      await step('close the store', () => this.deps.store.close());
      if (!this.lifecycle.is('stopped')) this.lifecycle.transition('stopped', 'closed');
    })();
    return this.closePromise;
  }

  /** Last chance to tell the master how tasks ended; what is left stays in the outbox for the next start. */
  private async deliverOutboxBriefly(ms: number): Promise<void> {
    if (!this.master.session?.alive) return;
    const timeout = new AbortController();
    await Promise.race([this.outbox.flush().catch(() => undefined), sleep(ms, timeout.signal).catch(() => undefined)]).finally(() => timeout.abort());
  }
}

/** Why no node may run `spec`, or undefined when it is runnable. */
function specProblem(spec: NonNullable<TaskAssignment['spec']>): string | undefined {
  try {
    checkTaskSpec(spec);
    return undefined;
  } catch (err) {
    if (err instanceof InvalidTaskError) return `invalid task spec: ${err.message}`;
    throw err;
  }
}
