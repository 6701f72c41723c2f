// How a worker's parts are put together: the master session, the outbox, the reporter, the
// reclaimer, the transfers and recovery, each handed the others and the worker through
// callbacks. Worker's constructor calls composeWorker once; the Worker itself keeps the
// lifecycle, the commands and the events.
import type { EventEmitter } from 'node:events';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { Capacity, TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { TunnelConfig } from '../protocol/gen/hivemind/v1/enroll.js';
import { splitHostPort, stripBrackets } from '../common/address.js';
import { GatewayPipeServer } from './gateway-pipe-server.js';
import type { MeshPeers, NodeCommand, TaskAssignment, TaskUpdate, TaskUpdateAck } from '../protocol/gen/hivemind/v1/node.js';
import type { ActiveTasks } from './active-tasks.js';
import type { DataCache } from './data-cache/data-cache.js';
import type { TaskExecutor, WorkerEvents } from './contracts.js';
import type { NodeBudget, Reservation } from './fit.js';
import type { NodeIdentity } from './identity-file.js';
import type { Lifecycle, LifecycleState } from './lifecycle.js';
import type { ConnectionFactory } from './master-connection.js';
import { MasterSession } from './master-session.js';
import { nodeFacts } from './node-facts.js';
import { Outbox } from './outbox.js';
import { Reclaimer } from './reclaimer.js';
import { Recovery } from './recovery.js';
import { Reporter } from './reporter.js';
import type { HostFacts, ResourceProbe } from './resources/resource-probe.js';
import { taskKey, type RunningTask, type TaskRunDeps } from './running-task.js';
import type { WorkerStore } from './store/worker-store.js';
import { TaskTransfers } from './task-transfers.js';
import { NoDataCacheError } from './task-data.js';
import { MAX_REPORTED_HELD, cacheStatus } from './data-cache/cache-status.js';
import { DIGEST_PREFIX } from '../protocol/data-rules.js';
import { errorMessage } from '../common/errors.js';
import type { CompiledWorkerOptions } from './worker-options.js';

export interface WorkerDeps {
  connectionFactory: ConnectionFactory;
  executor: TaskExecutor;
  /** Owned by the worker from here on: close() closes it. */
  store: WorkerStore;
  probe: ResourceProbe;
  clock: Clock;
  logger: Logger;
  /**
   * The node's data cache (opened and closed by the caller). Without one, a task that mounts
   * data sets is refused.
   */
  dataCache?: WorkerDataCache;
  /** The size an external data set's url announces (HEAD), for a mount that names none. */
  urlSize?(url: string, signal: AbortSignal): Promise<number>;
  /** Tunnel mode: the WireGuard tunnel to the master (status in reports, mesh peers from commands). */
  tunnel?: {
    status(): Promise<TunnelStatus>;
    setMeshPeers(msg: MeshPeers): Promise<void>;
    /**
     * The tunnel's addresses: the gateway pipe listens on the node's and takes connections from
     * the master's only. Absent: the pipe listens on 127.0.0.1.
     */
    readonly config?: Pick<TunnelConfig, 'address' | 'masterGrpcAddress'>;
  };
}

/** What the worker uses of the data cache: leases for its tasks, drops the master asks for, the monitor's view. */
export type WorkerDataCache = Pick<DataCache, 'acquire' | 'dropWhenFree' | 'wouldNotFit' | 'stats' | 'list'>;

/** What tasks may use on this host: the options' caps within what the host has, less the memory reserve. */
export function nodeBudget(options: CompiledWorkerOptions, host: HostFacts): NodeBudget {
  return {
    maxTasks: options.maxTasks,
    cpus: Math.min(options.cpus ?? host.cpuCores, host.cpuCores),
    memoryBytes: Math.max(0, Math.min(options.memory ?? Infinity, host.memoryBytes - options.memoryReserveBytes)),
    gpuIndexes: host.gpus.map((g) => g.index),
    taskDefaults: { cpus: options.taskDefaultCpus, memoryBytes: options.taskDefaultMemoryBytes },
  };
}

/** The worker's own state and parts its parts share. */
export interface WorkerCore {
  options: CompiledWorkerOptions;
  deps: WorkerDeps;
  host: HostFacts;
  budget: NodeBudget;
  identity: NodeIdentity | undefined;
  /** The worker's logger (component "worker"). */
  log: Logger;
  lifecycle: Lifecycle;
  active: ActiveTasks<RunningTask>;
  events: EventEmitter<WorkerEvents>;
}

/** What the parts ask of the worker. */
export interface WorkerHooks {
  status(): { free: Capacity; accepting: boolean; lifecycleState: LifecycleState };
  runningTasks(): { taskId: string; attempt: number }[];
  onCommand(cmd: NodeCommand): void;
  onRemoved(reason: string): Promise<void>;
  onUpdateAck(update: TaskUpdate, ack: TaskUpdateAck): void;
  /** Recovery found a task of an earlier run to carry on with. */
  takeUp(assignment: TaskAssignment, reservation: Reservation): void;
}

export interface WorkerParts {
  master: MasterSession;
  outbox: Outbox;
  reporter: Reporter;
  reclaimer: Reclaimer;
  transfers: TaskTransfers;
  recovery: Recovery;
  taskRunDeps: TaskRunDeps;
  /** The gateway pipe (not listening yet), when services are on and the executor can reach replica ports. */
  gatewayPipe: GatewayPipeServer | undefined;
  /** Drops data sets ("sha256:…") from the cache once no task holds them (the master removed them). */
  dropData(digests: readonly string[]): void;
}

export function composeWorker(core: WorkerCore, worker: WorkerHooks): WorkerParts {
  const { options, deps, host, log, events } = core;
  const capacity = () => {
    const { free, accepting } = worker.status();
    return { free, accepting };
  };
  // The parts call each other through these, all set below before any of them runs.
  let outbox: Outbox;
  let reporter: Reporter;
  let reclaimer: Reclaimer;
  let transfers: TaskTransfers;
  let recovery: Recovery;
  const gatewayPipe = createGatewayPipe(core);
  const master = new MasterSession({
    connectionFactory: deps.connectionFactory,
    masterAddresses: options.masterAddresses,
    dataDir: options.dataDir,
    name: options.name ?? host.hostname,
    enrollmentToken: options.enrollmentToken,
    backoff: options.backoff,
    clock: deps.clock,
    logger: log,
    lifecycle: core.lifecycle,
    identity: core.identity,
    nodeFacts: () => nodeFacts(host, options),
    onRegistered: (res) => reporter.setMasterInterval(res.reportIntervalMs),
    settlePrevious: () => outbox.settled(),
    catchUp: async (session) => {
      await outbox.flush();
      await recovery.resumePendingUploads(session);
      await outbox.flush();
    },
    subscribeRequest: () => {
      // Everything the master must not give up: running tasks, results still to upload, and tasks
      // whose last updates (their end, typically) it has not acknowledged yet. A task that finished
      // while the master was away is in the last group: without it the master would requeue it and
      // run it twice.
      const holding = [
        ...worker.runningTasks(),
        ...deps.store.pendingUploads().map((r) => ({ taskId: r.taskId, attempt: r.attempt })),
        ...deps.store.outboxTasks(),
      ];
      const running = [...new Map(holding.map((t) => [taskKey(t.taskId, t.attempt), t])).values()];
      // Offered only while the pipe listens: a node without it gets no replicas.
      const gateway = gatewayPipe?.listening ? { gateway: { port: gatewayPipe.port, key: gatewayPipe.key } } : {};
      // Exec is offered when the operator allows it and the executor can run commands in containers.
      // Mesh deltas: WorkerTunnel.setMeshPeers applies them (the master sends any only in mesh mode).
      return { running, ...capacity(), ...gateway, exec: options.exec && deps.executor.exec !== undefined, meshDeltas: true };
    },
    onCommand: (cmd) => worker.onCommand(cmd),
    onConnected: () => {
      // A first report right away, so the master sees this node's capacity without waiting an interval.
      reporter.reportNow();
      // The node id is known now: clear what earlier runs left (a killed worker's containers, spool files).
      reclaimer.soon();
    },
    onRemoved: (reason) => worker.onRemoved(reason),
  });
  // Data sets removed at the master (NodeCommand.drop_data): dropped once no task holds them; a
  // malformed digest is ignored.
  const dropData = (digests: readonly string[]) => {
    for (const d of digests.slice(0, MAX_REPORTED_HELD)) {
      if (!d.startsWith(DIGEST_PREFIX)) continue;
      deps.dataCache?.dropWhenFree(d.slice(DIGEST_PREFIX.length)).catch((err: unknown) => log.warn({ digest: d, err: errorMessage(err) }, 'dropping a data set from the cache failed'));
    }
  };
  outbox = new Outbox({
    store: deps.store,
    clock: deps.clock,
    logger: log,
    session: () => master.session,
    capacity,
    onUpdate: (update) => events.emit('task-updated', update),
    onAck: (update, ack) => worker.onUpdateAck(update, ack),
  });
  reporter = new Reporter({
    probe: deps.probe,
    executor: deps.executor,
    ...(deps.tunnel ? { tunnel: deps.tunnel } : {}),
    ...(deps.dataCache ? { cache: () => cacheStatus(deps.dataCache!.list(), deps.dataCache!.stats().budgetBytes) } : {}),
    store: deps.store,
    clock: deps.clock,
    logger: log,
    reportIntervalMs: options.reportIntervalMs,
    sampleRetention: { maxAgeMs: options.sampleMaxAgeMs, maxCount: options.sampleMaxCount },
    state: () => worker.status(),
    onSample: (sample) => {
      if (sample.docker.ok) reclaimer.dockerAnswered();
    },
    onReport: (report) => events.emit('report', report),
    onContribution: (point) => events.emit('contribution', point),
    send: (report) => {
      if (master.session?.alive) master.session.reportSink?.send(report);
    },
  });
  reclaimer = new Reclaimer({
    executor: deps.executor,
    store: deps.store,
    logger: log,
    spoolDir: options.spoolDir,
    intervalMs: options.reclaimIntervalMs,
    running: () => worker.runningTasks(),
  });
  const taskRunDeps: TaskRunDeps = {
    executor: deps.executor,
    store: deps.store,
    clock: deps.clock,
    logger: log,
    spoolDir: options.spoolDir,
    update: (task, state, extra) => outbox.append(task, state, extra),
    downloadInput: (task, file) => transfers.downloadInput(task, file),
    uploadResult: (task, result) => transfers.uploadResult(task, result),
    onLog: (event) => events.emit('task-log', event),
    onProgress: (event) => events.emit('task-progress', event),
    onDataProgress: (event) => events.emit('task-data-progress', event),
    ...(deps.dataCache ? { data: { acquire: (...a) => deps.dataCache!.acquire(...a), urlSize: (url, signal) => (deps.urlSize ? deps.urlSize(url, signal) : Promise.reject(new NoDataCacheError())) } } : {}),
    onLeftovers: (taskId) => reclaimer.addLeftovers(taskId),
    onReplica: (view) => events.emit('replica-status', view),
  };
  const taskSignal = (taskId: string, attempt: number) => core.active.get(taskId, attempt)?.signal;
  transfers = new TaskTransfers({
    master,
    store: deps.store,
    logger: log,
    taskSignal,
    onProgress: (event) => events.emit('task-progress', event),
  });
  recovery = new Recovery({
    store: deps.store,
    budget: core.budget,
    logger: log,
    transfers,
    closingSignal: master.closingSignal,
    taskSignal,
    update: (task, state, extra) => outbox.append(task, state, extra),
    takeUp: (assignment, reservation) => worker.takeUp(assignment, reservation),
  });
  return { master, outbox, reporter, reclaimer, transfers, recovery, taskRunDeps, dropData, gatewayPipe };
}

/**
 * Where the gateway pipe listens and whom it takes: on the tunnel, the node's tunnel address and
 * the master's only; without one, loopback (a development master on the same host).
 */
export function gatewayPipeEndpoint(tunnel: Pick<TunnelConfig, 'address' | 'masterGrpcAddress'> | undefined): { host: string; allowedRemote: string | undefined } {
  if (!tunnel?.address) return { host: '127.0.0.1', allowedRemote: undefined };
  return { host: tunnel.address.replace(/\/\d+$/, ''), allowedRemote: stripBrackets(splitHostPort(tunnel.masterGrpcAddress).host) };
}

function createGatewayPipe(core: WorkerCore): GatewayPipeServer | undefined {
  const { options, deps } = core;
  const connect = deps.executor.connect?.bind(deps.executor);
  if (!options.services || !connect) return undefined;
  return new GatewayPipeServer(
    { ...gatewayPipeEndpoint(deps.tunnel?.config), port: options.gatewayPort },
    {
      isReplica: (taskId, attempt) => {
        const t = core.active.get(taskId, attempt);
        return t !== undefined && t.isReplica && !t.aborted;
      },
      connect: (taskId, attempt, signal) => connect(taskId, attempt, signal),
      clock: deps.clock,
      logger: core.log,
    },
  );
}
