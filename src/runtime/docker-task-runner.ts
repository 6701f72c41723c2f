// Runs one task attempt in a locked-down container: pull if missing, per-task volumes, input
// through the safe tar filter, live logs, wall-clock timeout and cancellation, a precise outcome,
// /output collected as a checked tar.gz in the spool dir, and everything removed afterwards.
// The parts live beside it: attempt-resources (volumes, containers, cleanup), log-follower,
// task-outcome (the outcome decision), result-collector and orphan-reaper.
import { AbortedError, ArchiveCapError, ExecRefusedError, EngineError, EngineUnreachableError, InvalidTaskError, UnsafeArchiveError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { OutcomeKind, TaskNetwork, type TaskUsage } from '../protocol/gen/hivemind/v1/common.js';
import { abortOutcomeKind, asAbortReason, type AbortReason, type ExecRequest, type ExecutionResult, type TaskExecution, type TaskExecutor } from '../worker/contracts.js';
import type { OutputVolumes } from './output-volume.js';
import type { ContainerCreateConfig, ContainerEngine, ContainerInfo, ContainerState } from './container-engine.js';
import type { EgressAttachment } from './egress-network.js';
import { RUNNER_DEFAULTS, TASK_GID, TASK_UID, buildContainerConfig, containerName, effectiveLimits, volumeNames, type RunnerDefaults } from './container-spec.js';
import { LABEL_ATTEMPT, nodeLabelFilters } from './labels.js';
import { HostPathError } from './host-paths.js';
import { LogTail } from './log-tail.js';
import { TaskUsageSampler } from './task-usage.js';
import { AttemptResources, settledAll, type Created } from './attempt-resources.js';
import { LogFollower } from './log-follower.js';
import { collectResult } from './result-collector.js';
import { reapOrphans, type ReapResult } from './orphan-reaper.js';
import { NO_EXIT_CODE, OutcomeError, createOrStartFail, overCapMessage, runOutcome, type RunEnd } from './task-outcome.js';
import { ReplicaRunner } from './replica-runner.js';
import type { HealthTiming } from './replica-health.js';
import type { RestartPolicy } from './replica-restart.js';
import { servicesSupported, type NetnsConnectorOptions } from './netns-connector.js';
import type { Duplex } from 'node:stream';
import type { ExecProcess } from './exec-process.js';

export { NO_EXIT_CODE, overCapMessage } from './task-outcome.js';
export { reapOrphans, type ReapResult } from './orphan-reaper.js';

export interface DockerTaskRunnerOptions {
  /** The node id for labels; a function when it is only known after registration. */
  nodeId: string | (() => string);
  /** Where result archives are written (`<taskId>-<attempt>.tar.gz`). */
  spoolDir: string;
  defaults?: Partial<RunnerDefaults>;
  /** Cleanup calls (remove container/volumes) get this long, independent of the task's signal. */
  cleanupTimeoutMs?: number;
  /** Told of every image this runner pulls and every image a task uses, for the image GC. */
  images?: ImageUseRecorder;
  /** Makes each attempt's /output a filesystem of the output cap plus a small slack. */
  outputVolumes: OutputVolumes;
  /** Where a path of this process is on the Docker host (host-paths.ts); absent: the same path. */
  hostPath?: (path: string) => string;
  /** The node's egress network, when it offers one (--allow-egress and its firewall in place). */
  egress?: EgressAttachment | undefined;
  /** Service replicas: health check timing, restart backoff and connector settings (tests shorten them). */
  replicas?: { health?: Partial<HealthTiming>; restart?: Partial<RestartPolicy>; connector?: NetnsConnectorOptions };
}

/** Where the runner reports image pulls and uses; must not throw. */
export interface ImageUseRecorder {
  pulled(image: string): void;
  used(image: string): void;
}

export class DockerTaskRunner implements TaskExecutor {
  private readonly defaults: RunnerDefaults;
  /** Containers whose process runs now, by task attempt, for per-task usage. */
  private readonly running = new Map<string, { taskId: string; containerId: string }>();
  /** Tasks inside execute(), from before their first container exists: reclaim() never takes theirs. */
  private readonly executing = new Map<string, number>();
  private readonly usageSampler: TaskUsageSampler;
  private readonly resources: AttemptResources;
  /** How long removing an attempt's containers and volumes may take. Default 30 s. */
  private readonly cleanupTimeoutMs: number;
  /** Runs the tasks that are service replicas (spec.service). */
  private readonly replicas: ReplicaRunner;

  constructor(
    private readonly engine: ContainerEngine,
    private readonly options: DockerTaskRunnerOptions,
    private readonly logger: Logger,
  ) {
    this.defaults = { ...RUNNER_DEFAULTS, ...options.defaults };
    this.cleanupTimeoutMs = options.cleanupTimeoutMs ?? 30_000;
    this.usageSampler = new TaskUsageSampler((id) => this.engine.containerStats(id, AbortSignal.timeout(5_000)));
    this.resources = new AttemptResources(engine, { defaults: this.defaults, outputVolumes: options.outputVolumes, cleanupTimeoutMs: this.cleanupTimeoutMs });
    this.replicas = new ReplicaRunner(engine, this.resources, {
      defaults: this.defaults,
      nodeId: () => this.nodeId(),
      ensureImage: (exec, log) => this.ensureImage(exec, log),
      findContainer: (taskId, attempt, signal) => this.attemptContainer(taskId, attempt, signal),
      daemonGoing: () => this.daemonGoing(),
      ...options.replicas,
    });
  }

  usage(): Promise<TaskUsage[]> {
    return this.usageSampler.sample([...this.running.values(), ...this.replicas.runningContainers()]);
  }

  /** Whether this node can reach replica ports (nsenter and the right to use it): offer a gateway pipe only then. */
  servicesSupported(): Promise<{ ok: boolean; reason?: string }> {
    return servicesSupported(this.options.replicas?.connector?.nsenter);
  }

  /** A new connection to a running replica's port (ReplicaUnreachableError when there is none). */
  connect(taskId: string, attempt: number, signal?: AbortSignal): Promise<Duplex> {
    return this.replicas.connect(taskId, attempt, signal);
  }

  /** A command in the attempt's running container, as the task's user (ExecRefusedError when none runs). */
  async exec(taskId: string, attempt: number, request: ExecRequest, signal?: AbortSignal): Promise<ExecProcess> {
    const found = await this.attemptContainer(taskId, attempt, signal);
    if (!found?.state.running) throw new ExecRefusedError(`task ${taskId}: its container is not running on this node (${found ? found.state.status : 'none'})`);
    return this.engine.exec(found.id, { ...request, user: `${TASK_UID}:${TASK_GID}` }, signal);
  }

  async reclaim(keepTaskIds: readonly string[]): Promise<ReapResult> {
    const nodeId = this.nodeId();
    if (nodeId === 'unregistered') return { containers: [], volumes: [] };
    const keep = new Set(keepTaskIds);
    return reapOrphans(
      this.engine,
      nodeId,
      { has: (taskId: string) => keep.has(taskId) || this.executing.has(taskId) },
      AbortSignal.timeout(this.cleanupTimeoutMs),
      this.options.outputVolumes,
    );
  }

  private nodeId(): string {
    const id = this.options.nodeId;
    return typeof id === 'function' ? id() : id;
  }

  /** The attempt with its data sets named as the Docker host sees them. */
  private onHostPaths(exec: TaskExecution): TaskExecution {
    const map = this.options.hostPath;
    if (!map || !exec.dataMounts?.length) return exec;
    return { ...exec, dataMounts: exec.dataMounts.map((m) => ({ ...m, hostPath: map(m.hostPath) })) };
  }

  async execute(exec: TaskExecution): Promise<ExecutionResult> {
    this.executing.set(exec.taskId, (this.executing.get(exec.taskId) ?? 0) + 1);
    const untrack = () => {
      const n = (this.executing.get(exec.taskId) ?? 1) - 1;
      if (n > 0) this.executing.set(exec.taskId, n);
      else this.executing.delete(exec.taskId);
    };
    const log = this.logger.child({ taskId: exec.taskId, attempt: exec.attempt });
    if (exec.spec.service) {
      try {
        return await this.replicas.execute(this.onHostPaths(exec), log.child({ service: exec.spec.service.service, replica: exec.spec.service.replica }));
      } finally {
        untrack();
      }
    }
    const created: Created = { containers: [], volumes: [], outputFs: [] };
    let result: ExecutionResult;
    try {
      result = await this.executeBatch(exec, created, log);
    } catch (err) {
      await this.resources.cleanup(created, log).catch(() => false);
      untrack();
      throw err;
    }
    const removal = this.resources.cleanup(created, log).catch(() => false).finally(untrack);
    if (!result.result) {
      // Nothing to upload: the removal comes first. A failure may be the node's full disk (the
      // /output filesystem's file is what filled it), and the terminal update the caller writes
      // next needs the room that removal gives back.
      if (!(await removal)) result.leftovers = true;
      return result;
    }
    // The result is in the spool: nothing needs the ended container any more. Its removal (some
    // tens of ms of Docker and losetup calls) runs while the caller uploads the result, instead of
    // before; reclaim() keeps off this task until it has settled.
    result.cleanup = removal;
    return result;
  }

  /** One batch attempt to its result; what it makes in Docker is listed in `created` for the caller's cleanup. */
  private async executeBatch(exec: TaskExecution, created: Created, log: Logger): Promise<ExecutionResult> {
    const tail = new LogTail(this.defaults.logTailBytes);
    let runMs = 0;
    let net: { rxBytes: number; txBytes: number } | undefined;
    const result = (kind: OutcomeKind, message: string, exitCode = NO_EXIT_CODE, res?: ExecutionResult['result']): ExecutionResult => {
      const r: ExecutionResult = { outcome: { kind, exitCode, message, durationMs: runMs, ...(net ? { netRxBytes: net.rxBytes, netTxBytes: net.txBytes } : {}) }, logTail: tail.toString() };
      if (res) r.result = res;
      return r;
    };
    try {
      let config: ContainerCreateConfig;
      try {
        config = buildContainerConfig(this.onHostPaths(exec), this.nodeId(), this.defaults, this.options.egress);
      } catch (err) {
        if (err instanceof InvalidTaskError || err instanceof HostPathError) return result(OutcomeKind.OUTCOME_KIND_START_FAILED, err.message);
        throw err;
      }
      const limits = effectiveLimits(exec, this.defaults);

      let containerId: string;
      let run: RunEnd;
      if (exec.recovery === 'reattach') {
        const found = await this.attemptContainer(exec.taskId, exec.attempt, exec.signal);
        const startedAt = found ? startedAtMs(found.state) : undefined;
        if (!found || startedAt === undefined) {
          throw new OutcomeError(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, 'the container of this attempt disappeared before the restarted worker could reattach to it');
        }
        containerId = found.id;
        created.containers.push(found.id);
        const volumes = volumeNames(exec.taskId, exec.attempt);
        created.volumes.push(...Object.values(volumes));
        created.outputFs.push(volumes.output);
        // After a host reboot the loop device is gone and Docker could not mount /output again.
        if (!(await this.options.outputVolumes.attached(volumes.output))) {
          throw new OutcomeError(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, 'the /output filesystem of this attempt is no longer attached (was the host restarted?); its output is lost');
        }
        log.info({ containerId: found.id.slice(0, 12), running: found.state.running }, 'reattached to the container of an earlier run');
        exec.onPhase('running');
        const metered = await this.meter(exec, found.id, false, log);
        run = await this.observe(exec, found.id, { timeoutMs: limits.timeoutMs, startedAt }, tail, log);
        net = await metered?.();
      } else {
        if (exec.recovery === 'restart') await this.resources.discard(exec, this.nodeId(), log);
        exec.onPhase('pulling');
        // The volumes need no image: they are made while the image is checked (or pulled). An
        // image that cannot be had is the failure reported when both fail.
        const [, volumes] = await settledAll([this.ensureImage(exec, log), this.resources.createVolumes(exec, this.nodeId(), created)]);
        containerId = await this.resources.createContainer(exec, config, created, log, volumes);

        exec.onPhase('running');
        let metered: (() => Promise<{ rxBytes: number; txBytes: number } | undefined>) | undefined;
        run = await this.run(exec, containerId, limits.timeoutMs, tail, log, async () => (metered = await this.meter(exec, containerId, true, log)));
        net = await metered?.();
      }
      runMs = run.durationMs;
      const end = await runOutcome(run, limits, () => this.daemonGoing(), log);
      if (!end.collect) return result(end.kind, end.message, run.exitCode);
      const { kind, message } = end;

      exec.onPhase('collecting');
      try {
        const collected = await collectResult(this.engine, containerId, {
          taskId: exec.taskId,
          attempt: exec.attempt,
          spoolDir: this.options.spoolDir,
          maxOutputBytes: limits.maxOutputBytes,
          maxEntries: this.defaults.maxEntries,
          signal: exec.signal,
        });
        log.info({ kind: OutcomeKind[kind], exitCode: run.exitCode, resultBytes: collected.size }, 'task finished');
        return result(kind, message, run.exitCode, collected);
      } catch (err) {
        if (err instanceof ArchiveCapError && err.limit === 'bytes') {
          return result(OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, `${overCapMessage(exec.spec.maxOutputBytes, limits.maxOutputBytes)}: ${err.message} (the task ${message})`, run.exitCode);
        }
        if (err instanceof UnsafeArchiveError) {
          return result(OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, `${err.message} (the task ${message})`, run.exitCode);
        }
        throw err;
      }
    } catch (err) {
      if (err instanceof OutcomeError) return result(err.kind, err.message, err.exitCode);
      if (exec.signal.aborted) {
        const reason = asAbortReason(exec.signal.reason);
        return result(abortOutcomeKind(reason), `task ${reason} before it finished`);
      }
      // A daemon that is stopping answers with odd 500s ("database not open") before it goes:
      // an engine failure is checked against the daemon still being there.
      if (err instanceof EngineUnreachableError || (err instanceof EngineError && (await this.daemonGoing()))) {
        log.warn({ err: errorMessage(err) }, 'lost the Docker daemon during the task');
        return result(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, `the Docker daemon went away during the task (stopped or restarted): ${errorMessage(err)}`);
      }
      log.error({ err }, 'task runner failed');
      return result(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, errorMessage(err));
    }
  }

  /** Whether the engine stops answering within the next ~3 s (checked after an engine failure). */
  private async daemonGoing(): Promise<boolean> {
    for (let i = 0; i < 6; i++) {
      try {
        await this.engine.ping(AbortSignal.timeout(2_000));
      } catch {
        return true;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return false;
  }

  private async ensureImage(exec: TaskExecution, log: Logger): Promise<void> {
    const image = exec.spec.image;
    if (await this.engine.imageExists(image, exec.signal)) {
      this.options.images?.used(image);
      return;
    }
    log.info({ image }, 'pulling image');
    try {
      await this.engine.pullImage(image, (p) => exec.onPullProgress(p.currentBytes, p.totalBytes), exec.signal);
    } catch (err) {
      if (err instanceof AbortedError || exec.signal.aborted) throw err;
      throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, `image ${image} is not available on this node and could not be pulled: ${errorMessage(err)}`);
    }
    this.options.images?.pulled(image);
  }

  private async run(exec: TaskExecution, id: string, timeoutMs: number, tail: LogTail, log: Logger, started?: () => Promise<unknown>): Promise<RunEnd> {
    if (exec.signal.aborted) throw new AbortedError('aborted before start', { cause: exec.signal.reason });
    await createOrStartFail(() => this.engine.startContainer(id, exec.signal));
    log.info({ containerId: id.slice(0, 12) }, 'container started');
    const startedAt = Date.now();
    await started?.();
    return this.observe(exec, id, { timeoutMs, startedAt }, tail, log);
  }

  /**
   * An egress task: starts counting its bytes by its address on the egress network (`fresh`: a
   * new container, whose address may have been another's), and returns what reads and ends the
   * count once it has exited. Counting that fails is logged, never fails the task: the bytes are
   * then absent from its outcome. The first packets of a task, sent before its address is known
   * (a few ms after start), are not counted.
   */
  private async meter(exec: TaskExecution, id: string, fresh: boolean, log: Logger): Promise<(() => Promise<{ rxBytes: number; txBytes: number } | undefined>) | undefined> {
    const egress = this.options.egress;
    if (exec.spec.network !== TaskNetwork.TASK_NETWORK_EGRESS || !egress?.meter) return undefined;
    const meter = egress.meter;
    let ip: string | undefined;
    let info: ContainerInfo | undefined;
    try {
      info = await this.engine.inspectContainer(id, exec.signal);
      ip = info.addresses?.[egress.network];
      if (!ip) throw new Error(`the container has no address on ${egress.network}`);
      await meter.track(ip, fresh);
    } catch (err) {
      // Not counted, rather than counted in one direction only: the outcome then has no bytes,
      // and a rule that went in is taken out again.
      log.warn({ err: errorMessage(err) }, 'cannot count the task\'s network bytes');
      if (ip) await meter.untrack(ip).catch(() => {});
      ip = undefined;
    }
    // A cap (the node's, a promise to its owner, or the task's own) that cannot be applied: the task does not run on.
    if (egress.shaper && info?.state.running && info.state.pid) {
      try {
        const capped = await egress.shaper.apply(info.state.pid, exec.spec.egressRateBps);
        if (capped) log.info(capped, 'egress rate capped');
      } catch (err) {
        throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, `the egress rate cap could not be applied: ${errorMessage(err)}`);
      }
    }
    if (!ip) return undefined;
    const at = ip;
    return async () => {
      try {
        const counts = await meter.counts(at);
        await meter.untrack(at);
        return counts;
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'cannot read the task\'s network bytes');
        return undefined;
      }
    };
  }

  /**
   * Follows a started container to its end: logs, the wall-clock limit counted from `startedAt`,
   * cancellation, and the exit status. Output an earlier process already forwarded
   * (`exec.logsSentUntilNs`) goes to the tail only.
   */
  private async observe(exec: TaskExecution, id: string, at: { timeoutMs: number; startedAt: number }, tail: LogTail, log: Logger): Promise<RunEnd> {
    const runKey = `${exec.taskId}#${exec.attempt}`;
    this.running.set(runKey, { taskId: exec.taskId, containerId: id });

    const logs = new LogFollower(this.engine, id, (stream, data, atNs) => this.emitLog(exec, tail, stream, data, atNs), log);

    let stopped: AbortReason | 'timeout' | undefined;
    const kill = (why: AbortReason | 'timeout') => {
      stopped ??= why;
      log.info({ reason: why }, 'killing container');
      this.engine.killContainer(id).catch((err: unknown) => log.warn({ err }, 'kill failed'));
    };
    const onAbort = () => kill(asAbortReason(exec.signal.reason));
    exec.signal.addEventListener('abort', onAbort, { once: true });
    if (exec.signal.aborted) onAbort();
    const timer = setTimeout(() => kill('timeout'), Math.max(0, at.timeoutMs - (Date.now() - at.startedAt)));
    let exit;
    try {
      // No signal here: a kill ends the wait, and the exit status is still wanted.
      exit = await this.engine.waitContainer(id);
    } finally {
      clearTimeout(timer);
      exec.signal.removeEventListener('abort', onAbort);
      this.running.delete(runKey);
    }
    // What the live stream missed at its end was passed on; when it also missed earlier frames
    // (not sent: they would follow later output), the tail is taken from the engine's log, in order.
    const inOrder = await logs.finish();
    if (inOrder) tail.replaceWith(inOrder.map((m) => m.data));
    const info = await this.engine.inspectContainer(id);
    // A reattached container may have ended long before the worker came back: the engine's
    // finish time, when it has one, is the end of the run.
    const finishedAt = info.state.finishedAt ? Date.parse(info.state.finishedAt) : NaN;
    const end = Number.isFinite(finishedAt) && finishedAt >= at.startedAt ? finishedAt : Date.now();
    // A container that started ran for some time: a run shorter than the millisecond clock's tick
    // (`true`) is 1 ms, so that 0 keeps meaning "never ran" to whoever reads the outcome.
    return { exitCode: exit.statusCode, oomKilled: info.state.oomKilled, durationMs: Math.max(1, end - at.startedAt), ...(stopped ? { stopped } : {}) };
  }

  /** The task container of an attempt, found by its labels and name. */
  private async attemptContainer(taskId: string, attempt: number, signal?: AbortSignal): Promise<ContainerInfo | undefined> {
    const name = containerName(taskId, attempt);
    const list = await this.engine.listContainers([...nodeLabelFilters(this.nodeId(), taskId), `${LABEL_ATTEMPT}=${attempt}`], signal);
    const found = list.find((c) => c.names.includes(name));
    return found ? this.engine.inspectContainer(found.id, signal) : undefined;
  }

  async probe(taskId: string, attempt: number, signal?: AbortSignal): Promise<'started' | 'not-started'> {
    const found = await this.attemptContainer(taskId, attempt, signal);
    return found && startedAtMs(found.state) !== undefined ? 'started' : 'not-started';
  }

  private emitLog(exec: TaskExecution, tail: LogTail, stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint): void {
    tail.push(data);
    if (exec.logsSentUntilNs !== undefined && atNs <= exec.logsSentUntilNs) return;
    try {
      exec.onLog(stream, data, atNs);
    } catch (err) {
      this.logger.warn({ err, taskId: exec.taskId }, 'onLog listener threw');
    }
  }
}

/** When the container's process started, or undefined when it never did ("0001-01-01..." in Docker). */
function startedAtMs(state: ContainerState): number | undefined {
  if (!state.startedAt) return undefined;
  const t = Date.parse(state.startedAt);
  return Number.isFinite(t) && t > 0 ? t : undefined;
}

export { containerName };
