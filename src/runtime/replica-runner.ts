// Runs a service replica (a task whose spec has `service`): the batch task's container and
// lock-down, but kept running until the task is cancelled. Its container is started again with
// backoff when it exits or stays unhealthy, its port is reached through a netns connector (the
// container keeps network none), and every change is reported as a ReplicaStatus. It ends only
// by its signal: stopped with the grace period, removed, CANCELLED or SHUTDOWN, no result.
import type { Duplex } from 'node:stream';
import { AbortedError, EngineError, EngineUnreachableError, HivemindError, InvalidTaskError, ReplicaUnreachableError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { sleep } from '../common/sleep.js';
import { OutcomeKind, type ReplicaStatus } from '../protocol/gen/hivemind/v1/common.js';
import { abortOutcomeKind, asAbortReason, type ExecutionResult, type TaskExecution } from '../worker/contracts.js';
import type { AttemptResources, Created } from './attempt-resources.js';
import type { ContainerEngine, ContainerInfo } from './container-engine.js';
import { buildContainerConfig, volumeNames, type RunnerDefaults } from './container-spec.js';
import { HostPathError } from './host-paths.js';
import { LogFollower } from './log-follower.js';
import { LogTail } from './log-tail.js';
import { NetnsConnector, type NetnsConnectorOptions } from './netns-connector.js';
import { HEALTH_DEFAULTS, watchHealth, type HealthTiming } from './replica-health.js';
import { RESTART_DEFAULTS, describeExit, nextRestart, type RestartPolicy } from './replica-restart.js';
import { NO_EXIT_CODE, OutcomeError, createOrStartFail } from './task-outcome.js';

/** SIGTERM to SIGKILL when the spec's service.grace_ms is 0. */
export const DEFAULT_GRACE_MS = 10_000;

export interface ReplicaRunnerOptions {
  defaults: RunnerDefaults;
  nodeId: () => string;
  /** Pulls the image when missing (the batch runner's, with its progress and image-use records). */
  ensureImage: (exec: TaskExecution, log: Logger) => Promise<void>;
  /** The container of an attempt, found by its labels and name. */
  findContainer: (taskId: string, attempt: number, signal?: AbortSignal) => Promise<ContainerInfo | undefined>;
  /** Whether the engine stops answering soon (asked after an engine failure). */
  daemonGoing: () => Promise<boolean>;
  health?: Partial<HealthTiming>;
  restart?: Partial<RestartPolicy>;
  connector?: NetnsConnectorOptions;
}

/** A replica this runner runs now. */
interface Live {
  taskId: string;
  port: number;
  containerId: string;
  /** Set while its container runs. */
  connector?: NetnsConnector;
}

/** How one run of the container ended. */
interface RunEnd {
  exitCode: number;
  oomKilled: boolean;
  /** Set when it was stopped for failing its health checks: why. */
  unhealthy?: string;
  /** How long it had been healthy without a break when it ended. */
  healthyForMs: number;
}

export class ReplicaRunner {
  private readonly live = new Map<string, Live>();
  private readonly health: HealthTiming;
  private readonly restart: RestartPolicy;

  constructor(
    private readonly engine: ContainerEngine,
    private readonly resources: AttemptResources,
    private readonly options: ReplicaRunnerOptions,
  ) {
    this.health = { ...HEALTH_DEFAULTS, ...options.health };
    this.restart = { ...RESTART_DEFAULTS, ...options.restart };
  }

  /** The replica containers running now, for per-task usage. */
  runningContainers(): { taskId: string; containerId: string }[] {
    return [...this.live.values()].filter((l) => l.connector).map((l) => ({ taskId: l.taskId, containerId: l.containerId }));
  }

  /** A new connection to the replica's port, inside its container's network namespace. */
  async connect(taskId: string, attempt: number, signal?: AbortSignal): Promise<Duplex> {
    const live = this.live.get(key(taskId, attempt));
    if (!live) throw new ReplicaUnreachableError(`task ${taskId} (attempt ${attempt}) is not a service replica running on this node`);
    if (!live.connector) throw new ReplicaUnreachableError(`replica ${taskId}: its container is not running now (restarting)`);
    try {
      return await live.connector.connect(live.port, signal);
    } catch (err) {
      if (err instanceof ReplicaUnreachableError) throw new ReplicaUnreachableError(`replica ${taskId}, port ${live.port}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  async execute(exec: TaskExecution, log: Logger): Promise<ExecutionResult> {
    const service = exec.spec.service!;
    const tail = new LogTail(this.options.defaults.logTailBytes);
    const created: Created = { containers: [], volumes: [], outputFs: [] };
    const startedAt = Date.now();
    const stop: { pending?: Promise<void> } = {};
    let returned: ExecutionResult | undefined;
    const result = (kind: OutcomeKind, message: string): ExecutionResult => {
      returned = { outcome: { kind, exitCode: NO_EXIT_CODE, message, durationMs: Date.now() - startedAt }, logTail: tail.toString() };
      return returned;
    };
    const k = key(exec.taskId, exec.attempt);
    try {
      let config;
      try {
        config = buildContainerConfig(exec, this.options.nodeId(), this.options.defaults);
      } catch (err) {
        if (err instanceof InvalidTaskError || err instanceof HostPathError) return result(OutcomeKind.OUTCOME_KIND_START_FAILED, err.message);
        throw err;
      }
      let containerId: string;
      let running = false;
      if (exec.recovery === 'reattach') {
        const found = await this.options.findContainer(exec.taskId, exec.attempt, exec.signal);
        if (!found) throw new OutcomeError(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, 'the container of this replica disappeared before the restarted worker could reattach to it');
        containerId = found.id;
        created.containers.push(found.id);
        const volumes = volumeNames(exec.taskId, exec.attempt);
        created.volumes.push(...Object.values(volumes));
        created.outputFs.push(volumes.output);
        running = found.state.running;
        log.info({ containerId: found.id.slice(0, 12), running }, 'reattached to the replica container of an earlier run');
      } else {
        if (exec.recovery === 'restart') await this.resources.discard(exec, this.options.nodeId(), log);
        exec.onPhase('pulling');
        await this.options.ensureImage(exec, log);
        containerId = await this.resources.prepare(exec, this.options.nodeId(), config, created, log);
      }
      this.live.set(k, { taskId: exec.taskId, port: service.port, containerId });
      exec.onPhase('running');
      await this.supervise(exec, containerId, running, tail, stop, log);
      throw new Error('unreachable: a replica ends only when aborted');
    } catch (err) {
      if (err instanceof OutcomeError) return result(err.kind, err.message);
      if (exec.signal.aborted) {
        const reason = asAbortReason(exec.signal.reason);
        log.info({ reason }, 'replica stopped');
        return result(abortOutcomeKind(reason), reason === 'shutdown' ? 'replica stopped by node shutdown' : `replica ${reason}`);
      }
      if (err instanceof EngineUnreachableError || (err instanceof EngineError && (await this.options.daemonGoing()))) {
        log.warn({ err: errorMessage(err) }, 'lost the Docker daemon during the replica');
        return result(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, `the Docker daemon went away during the replica (stopped or restarted): ${errorMessage(err)}`);
      }
      log.error({ err }, 'replica runner failed');
      return result(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, errorMessage(err));
    } finally {
      // The graceful stop must finish before the forced removal, or the removal kills at once.
      if (stop.pending) await stop.pending.catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'stopping the replica failed; removing it'));
      this.live.get(k)?.connector?.close();
      this.live.delete(k);
      if (!(await this.resources.cleanup(created, log)) && returned) returned.leftovers = true;
    }
  }

  /** Keeps the container running until the signal aborts (then throws AbortedError). */
  private async supervise(exec: TaskExecution, id: string, running: boolean, tail: LogTail, stop: { pending?: Promise<void> }, log: Logger): Promise<never> {
    const signal = exec.signal;
    const graceMs = exec.spec.service!.graceMs > 0 ? exec.spec.service!.graceMs : DEFAULT_GRACE_MS;
    let status: ReplicaStatus = { healthy: false, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: false };
    const report = (patch: Partial<ReplicaStatus>) => {
      const next = { ...status, ...patch };
      if (Object.keys(next).every((f) => next[f as keyof ReplicaStatus] === status[f as keyof ReplicaStatus])) return;
      status = next;
      try {
        exec.onReplica?.({ ...status });
      } catch (err) {
        log.warn({ err }, 'onReplica listener threw');
      }
    };
    // The graceful stop on abort, whatever the replica is doing then.
    const onAbort = () => {
      stop.pending ??= this.engine.stopContainer(id, graceMs, AbortSignal.timeout(graceMs + 30_000));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    // Output already forwarded: by an earlier process, or by an earlier run of this container
    // (Docker replays a restarted container's whole log).
    let seenNs = exec.logsSentUntilNs ?? -1n;
    let streak = 0;
    try {
      for (let first = true; ; first = false) {
        if (signal.aborted) throw new AbortedError('replica aborted', { cause: signal.reason });
        if (!(first && running)) {
          await createOrStartFail(() => this.engine.startContainer(id, signal));
          log.info({ containerId: id.slice(0, 12), restarts: status.restarts }, 'replica container started');
          // Said as soon as it is: a run shorter than the inspect below would otherwise never show as running.
          report({ running: true, healthy: false, healthMessage: '', restartAtMs: 0 });
        }
        const replayUntil = seenNs;
        const emit = (stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint) => {
          if (atNs <= replayUntil) return;
          if (atNs > seenNs) seenNs = atNs;
          tail.push(data);
          try {
            exec.onLog(stream, data, atNs);
          } catch (err) {
            log.warn({ err }, 'onLog listener threw');
          }
        };
        const end = await this.runOnce(exec, id, emit, report, graceMs, log);
        if (signal.aborted) throw new AbortedError('replica aborted', { cause: signal.reason });
        const next = nextRestart(streak, end.healthyForMs, this.restart);
        streak = next.streak;
        const now = Date.now();
        const lastExit = describeExit(end);
        report({ running: false, healthy: false, healthMessage: '', restarts: status.restarts + 1, lastExit, lastExitAtMs: now, restartAtMs: now + next.delayMs });
        log.warn({ lastExit, restartInMs: next.delayMs }, 'replica container stopped; starting it again after the backoff');
        await sleep(next.delayMs, signal);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** One run of the started container: connector, health checks and logs, until it stops. */
  private async runOnce(
    exec: TaskExecution,
    id: string,
    emit: (stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint) => void,
    report: (patch: Partial<ReplicaStatus>) => void,
    graceMs: number,
    log: Logger,
  ): Promise<RunEnd> {
    const live = this.live.get(key(exec.taskId, exec.attempt))!;
    const service = exec.spec.service!;
    const logs = new LogFollower(this.engine, id, emit, log);
    const info = await this.engine.inspectContainer(id, exec.signal);
    if (info.state.running && info.state.pid) {
      try {
        live.connector = NetnsConnector.start(info.state.pid, log, this.options.connector);
      } catch (err) {
        if (!(err instanceof HivemindError)) throw err;
        log.warn({ err: err.message }, 'no connector into the replica container');
      }
    }
    report({ running: info.state.running, healthy: false, healthMessage: '', restartAtMs: 0 });

    const checks = new AbortController();
    const stopChecks = () => checks.abort();
    exec.signal.addEventListener('abort', stopChecks, { once: true });
    let healthySince: number | undefined;
    let unhealthy: string | undefined;
    const connector = live.connector;
    const watching = connector
      ? watchHealth(
          (signal) => connector.connect(service.port, signal),
          { path: service.healthPath, port: service.port },
          {
            onChange: (h) => {
              if (h.healthy) healthySince ??= Date.now();
              else healthySince = undefined;
              report({ healthy: h.healthy, healthMessage: h.message });
            },
            onRestart: (last) => {
              unhealthy = `${this.health.restartAfter} health checks failed, the last: ${last}`;
              log.warn({ last }, 'replica unhealthy: restarting its container');
              this.engine.stopContainer(id, graceMs).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'stopping the unhealthy replica failed'));
            },
          },
          checks.signal,
          this.health,
        ).catch((err: unknown) => log.warn({ err }, 'health checks failed'))
      : Promise.resolve();
    let exit;
    let healthyForMs = 0;
    try {
      // No signal: a stop ends the wait, and the exit status is still wanted.
      exit = await this.engine.waitContainer(id);
    } finally {
      if (healthySince !== undefined) healthyForMs = Date.now() - healthySince;
      checks.abort();
      exec.signal.removeEventListener('abort', stopChecks);
      connector?.close();
      live.connector = undefined;
    }
    await watching;
    await logs.finish();
    const after = await this.engine.inspectContainer(id);
    const end: RunEnd = { exitCode: exit.statusCode, oomKilled: after.state.oomKilled, healthyForMs };
    if (unhealthy !== undefined) end.unhealthy = unhealthy;
    return end;
  }
}

function key(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}
