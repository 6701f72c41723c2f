// Runs one task attempt in a locked-down container: pull if missing, per-task volumes, input
// through the safe tar filter, live logs, wall-clock timeout and cancellation, a precise outcome,
// /output collected as a checked tar.gz in the spool dir, and everything removed afterwards.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { AbortedError, ArchiveCapError, EngineError, EngineUnreachableError, HivemindError, InvalidTaskError, UnsafeArchiveError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { OutcomeKind, type TaskUsage } from '../protocol/gen/hivemind/v1/common.js';
import { abortOutcomeKind, asAbortReason, type AbortReason, type ExecutionResult, type TaskExecution, type TaskExecutor } from '../worker/contracts.js';
import { gunzipStream, gzipStream, safeTar } from '../archive/safe-tar.js';
import { formatBytes } from '../common/units.js';
import { resultArchiveBound } from '../protocol/result-bound.js';
import { OutputFsUnavailableError, type OutputVolumes, type VolumeDriverOptions } from './output-volume.js';
import type { ContainerCreateConfig, ContainerEngine, ContainerInfo, ContainerState, LogSink } from './container-engine.js';
import {
  INPUT_DIR,
  OUTPUT_DIR,
  RUNNER_DEFAULTS,
  TASK_GID,
  TASK_UID,
  buildContainerConfig,
  containerName,
  effectiveLimits,
  volumeNames,
  type RunnerDefaults,
} from './container-spec.js';
import { LABEL_ATTEMPT, LABEL_TASK_ID, nodeLabelFilters, taskLabels } from './labels.js';
import { LogTail } from './log-tail.js';
import { TaskUsageSampler } from './task-usage.js';
import { BufferReclaimer } from '../common/buffer-reclaimer.js';

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
}

/** Where the runner reports image pulls and uses; must not throw. */
export interface ImageUseRecorder {
  pulled(image: string): void;
  used(image: string): void;
}

/** Thrown inside execute() to end it with a specific outcome; never escapes. */
class OutcomeError extends HivemindError {
  constructor(readonly kind: OutcomeKind, message: string, readonly exitCode = -1) {
    super('TASK_OUTCOME', message);
  }
}

/** Exit code reported when the process never exited on its own (start failures, rejections). */
export const NO_EXIT_CODE = -1;

/** Exit codes of a container ended by SIGTERM or SIGKILL (128 + signal). */
const SIGNAL_EXITS = new Set([128 + 15, 128 + 9]);

/** After the container ended, a log stream that delivered nothing for this long is given up. */
const LOG_STALL_MS = 5000;
/** How much of the end of the output is read back from Docker when the live stream fell behind. */
const END_OF_LOG_BYTES = 1024 * 1024;

export class DockerTaskRunner implements TaskExecutor {
  private readonly defaults: RunnerDefaults;
  /** Containers whose process runs now, by task attempt, for per-task usage. */
  private readonly running = new Map<string, { taskId: string; containerId: string }>();
  /** Tasks inside execute(), from before their first container exists: reclaim() never takes theirs. */
  private readonly executing = new Map<string, number>();
  private readonly usageSampler: TaskUsageSampler;

  constructor(
    private readonly engine: ContainerEngine,
    private readonly options: DockerTaskRunnerOptions,
    private readonly logger: Logger,
  ) {
    this.defaults = { ...RUNNER_DEFAULTS, ...options.defaults };
    this.usageSampler = new TaskUsageSampler((id) => this.engine.containerStats(id, AbortSignal.timeout(5_000)));
  }

  usage(): Promise<TaskUsage[]> {
    return this.usageSampler.sample([...this.running.values()]);
  }

  async reclaim(keepTaskIds: readonly string[]): Promise<ReapResult> {
    const nodeId = this.nodeId();
    if (nodeId === 'unregistered') return { containers: [], volumes: [] };
    const keep = new Set(keepTaskIds);
    return reapOrphans(
      this.engine,
      nodeId,
      { has: (taskId: string) => keep.has(taskId) || this.executing.has(taskId) },
      AbortSignal.timeout(this.options.cleanupTimeoutMs ?? 30_000),
      this.options.outputVolumes,
    );
  }

  private nodeId(): string {
    const id = this.options.nodeId;
    return typeof id === 'function' ? id() : id;
  }

  async execute(exec: TaskExecution): Promise<ExecutionResult> {
    this.executing.set(exec.taskId, (this.executing.get(exec.taskId) ?? 0) + 1);
    try {
      return await this.executeTracked(exec);
    } finally {
      const n = (this.executing.get(exec.taskId) ?? 1) - 1;
      if (n > 0) this.executing.set(exec.taskId, n);
      else this.executing.delete(exec.taskId);
    }
  }

  private async executeTracked(exec: TaskExecution): Promise<ExecutionResult> {
    const log = this.logger.child({ taskId: exec.taskId, attempt: exec.attempt });
    const tail = new LogTail(this.defaults.logTailBytes);
    const created: Created = { containers: [], volumes: [], outputFs: [] };
    let runMs = 0;
    // The result returned; cleanup (in `finally`, after it is made) marks it when it left debris.
    let returned: ExecutionResult | undefined;
    const result = (kind: OutcomeKind, message: string, exitCode = NO_EXIT_CODE, res?: ExecutionResult['result']): ExecutionResult => {
      const r: ExecutionResult = { outcome: { kind, exitCode, message, durationMs: runMs }, logTail: tail.toString() };
      if (res) r.result = res;
      returned = r;
      return r;
    };
    try {
      let config: ContainerCreateConfig;
      try {
        config = buildContainerConfig(exec, this.nodeId(), this.defaults);
      } catch (err) {
        if (err instanceof InvalidTaskError) return result(OutcomeKind.OUTCOME_KIND_START_FAILED, err.message);
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
        run = await this.observe(exec, found.id, { timeoutMs: limits.timeoutMs, startedAt }, tail, log);
      } else {
        if (exec.recovery === 'restart') await this.discardAttempt(exec, log);
        exec.onPhase('pulling');
        await this.ensureImage(exec, log);

        containerId = await this.prepare(exec, config, created, log);

        exec.onPhase('running');
        run = await this.run(exec, containerId, limits.timeoutMs, tail, log);
      }
      runMs = run.durationMs;
      if (run.stopped === 'cancelled' || run.stopped === 'superseded' || run.stopped === 'shutdown') {
        return result(abortOutcomeKind(run.stopped), `task ${run.stopped === 'shutdown' ? 'stopped by node shutdown' : run.stopped}`, run.exitCode);
      }

      let kind: OutcomeKind;
      let message: string;
      if (run.stopped === 'timeout') {
        kind = OutcomeKind.OUTCOME_KIND_TIMED_OUT;
        message = `killed after the ${limits.timeoutMs} ms wall-clock limit`;
      } else if (run.oomKilled && run.exitCode !== 0) {
        kind = OutcomeKind.OUTCOME_KIND_OOM_KILLED;
        message = `killed by the kernel: over the ${limits.memoryBytes}-byte memory limit`;
      } else if (SIGNAL_EXITS.has(run.exitCode) && (await this.daemonGoing())) {
        // A stopping daemon kills its containers first (SIGTERM, then SIGKILL 10 s later) and
        // answers a little longer: the exit was the daemon's, not the task's.
        log.warn({ exitCode: run.exitCode }, 'lost the Docker daemon during the task');
        return result(OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, `the Docker daemon went away during the task (stopped or restarted): the container was ended with code ${run.exitCode} as the daemon shut down`, run.exitCode);
      } else {
        // The engine flags OOM for any process of the container; a task whose main process still
        // exited 0 handled it, and its result counts.
        kind = OutcomeKind.OUTCOME_KIND_EXITED;
        message = `exited with code ${run.exitCode}${run.oomKilled ? ' (a process of the task was killed for exceeding the memory limit)' : ''}`;
      }

      exec.onPhase('collecting');
      try {
        const collected = await this.collect(exec, containerId, limits.maxOutputBytes);
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
    } finally {
      if (!(await this.cleanup(created, log)) && returned) returned.leftovers = true;
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

  /**
   * Creates volumes and the task container, and fills the volumes through a never-started staging
   * container: /input is read-only in the task container, and Docker refuses archive writes to
   * read-only mounts. The staging container also makes both volume roots owned by the task user,
   * so /output is writable even for images that have no /output directory.
   */
  private async prepare(exec: TaskExecution, config: ContainerCreateConfig, created: Created, log: Logger): Promise<string> {
    const signal = exec.signal;
    const labels = taskLabels(this.nodeId(), exec.taskId, exec.attempt);
    const volumes = volumeNames(exec.taskId, exec.attempt);
    // /input is read-only in the task container and filled here through the size-checked input
    // filter, so a plain volume; /output gets a filesystem of its own that ends at the cap.
    await this.engine.createVolume(volumes.input, labels, signal);
    created.volumes.push(volumes.input);
    const cap = effectiveLimits(exec, this.defaults).maxOutputBytes;
    let outputOpts: VolumeDriverOptions | undefined;
    created.outputFs.push(volumes.output);
    try {
      outputOpts = await this.options.outputVolumes.create(volumes.output, cap, this.defaults.maxEntries);
    } catch (err) {
      if (err instanceof OutputFsUnavailableError) {
        throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, `not started: this node could not make the task's bounded /output: ${err.message}`);
      }
      throw err;
    }
    await this.engine.createVolume(volumes.output, labels, signal, outputOpts);
    created.volumes.push(volumes.output);
    const stagingId = await this.createOrStartFail(() =>
      this.engine.createContainer(
        {
          ...config,
          name: `${config.name}-staging`,
          Cmd: ['/hivemind-staging-never-started'],
          // Writable root only here: the volume-root entries are extracted at "/", and this
          // container never runs.
          HostConfig: { ...config.HostConfig, ReadonlyRootfs: false, Mounts: config.HostConfig.Mounts.map((m) => ({ ...m, ReadOnly: false })) },
        },
        signal,
      ),
    );
    created.containers.push(stagingId);
    await this.engine.putArchive(stagingId, '/', volumeRootsTar(), signal);
    if (exec.inputFile) {
      const input = safeTar(gunzipStream(createReadStream(exec.inputFile)), {
        maxBytes: this.defaults.maxInputBytes,
        maxEntries: this.defaults.maxEntries,
        symlinks: 'contained',
        owner: { uid: TASK_UID, gid: TASK_GID },
        label: 'input archive',
      });
      let inputError: unknown;
      input.on('error', (err) => (inputError = err));
      try {
        await this.engine.putArchive(stagingId, INPUT_DIR, input, signal);
      } catch (err) {
        const cause = inputError ?? err;
        if (cause instanceof UnsafeArchiveError) throw new OutcomeError(OutcomeKind.OUTCOME_KIND_INPUT_REJECTED, cause.message);
        throw err;
      }
      if (inputError) {
        throw inputError instanceof UnsafeArchiveError ? new OutcomeError(OutcomeKind.OUTCOME_KIND_INPUT_REJECTED, inputError.message) : inputError;
      }
      log.debug('input unpacked into /input');
    }
    await this.engine.removeContainer(stagingId, signal);
    created.containers.splice(created.containers.indexOf(stagingId), 1);

    const id = await this.createOrStartFail(() => this.engine.createContainer(config, signal));
    created.containers.push(id);
    return id;
  }

  /** An engine refusal of the config (bad limits, missing runtime) is START_FAILED, not a crash. */
  private async createOrStartFail<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, errorMessage(err));
    }
  }

  private async run(exec: TaskExecution, id: string, timeoutMs: number, tail: LogTail, log: Logger): Promise<RunEnd> {
    if (exec.signal.aborted) throw new AbortedError('aborted before start', { cause: exec.signal.reason });
    await this.createOrStartFail(() => this.engine.startContainer(id, exec.signal));
    log.info({ containerId: id.slice(0, 12) }, 'container started');
    return this.observe(exec, id, { timeoutMs, startedAt: Date.now() }, tail, log);
  }

  /**
   * Follows a started container to its end: logs, the wall-clock limit counted from `startedAt`,
   * cancellation, and the exit status. Output an earlier process already forwarded
   * (`exec.logsSentUntilNs`) goes to the tail only.
   */
  private async observe(exec: TaskExecution, id: string, at: { timeoutMs: number; startedAt: number }, tail: LogTail, log: Logger): Promise<RunEnd> {
    const runKey = `${exec.taskId}#${exec.attempt}`;
    this.running.set(runKey, { taskId: exec.taskId, containerId: id });

    const logCtl = new AbortController();
    let lastLogAt = Date.now();
    let lastNs = 0n;
    const seen = (stream: 'stdout' | 'stderr') => (d: Buffer, atNs: bigint) => {
      [lastLogAt, lastNs] = [Date.now(), atNs];
      this.emitLog(exec, tail, stream, d, atNs);
    };
    const sink: LogSink = { stdout: seen('stdout'), stderr: seen('stderr') };
    const logsDone = this.engine
      .followLogs(
        id,
        sink,
        logCtl.signal,
      )
      .catch((err: unknown) => {
        if (!logCtl.signal.aborted) log.warn({ err }, 'log stream failed');
      });

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
    // The log stream ends once Docker has sent all of the output, which after a flood can be
    // seconds after the exit: read it to its end (the part people read), but don't let a stream
    // that stopped moving hold the task.
    const logTimer = setInterval(() => {
      if (Date.now() - lastLogAt > LOG_STALL_MS) logCtl.abort();
    }, 500);
    await logsDone;
    clearInterval(logTimer);
    // A follower slower than the task loses output when Docker rotates the log under it, the end
    // included: read what Docker still holds after the last frame seen.
    try {
      const end = await this.engine.readLogsSince(id, lastNs, END_OF_LOG_BYTES);
      if (end.skippedBytes > 0) {
        this.emitLog(exec, tail, 'stderr', Buffer.from(`\n[hivemind: ${end.skippedBytes} bytes of output skipped here: the log stream fell behind the task]\n`), lastNs + 1n);
      }
      for (const [i, m] of end.messages.entries()) {
        sink[m.stream](m.data, m.atNs);
        if (i % 1000 === 999) await nextTurn(); // a flood's end must not stall the reports
      }
    } catch (err) {
      log.warn({ err }, 'reading the end of the log failed');
    }
    const info = await this.engine.inspectContainer(id);
    // A reattached container may have ended long before the worker came back: the engine's
    // finish time, when it has one, is the end of the run.
    const finishedAt = info.state.finishedAt ? Date.parse(info.state.finishedAt) : NaN;
    const end = Number.isFinite(finishedAt) && finishedAt >= at.startedAt ? finishedAt : Date.now();
    return { exitCode: exit.statusCode, oomKilled: info.state.oomKilled, durationMs: end - at.startedAt, ...(stopped ? { stopped } : {}) };
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

  /** Removes what an earlier process left of this attempt (containers, volumes) before a fresh run. */
  private async discardAttempt(exec: TaskExecution, log: Logger): Promise<void> {
    const list = await this.engine.listContainers([...nodeLabelFilters(this.nodeId(), exec.taskId), `${LABEL_ATTEMPT}=${exec.attempt}`], exec.signal);
    for (const c of list) await this.engine.removeContainer(c.id, exec.signal);
    const volumes = volumeNames(exec.taskId, exec.attempt);
    for (const v of Object.values(volumes)) await this.engine.removeVolume(v, exec.signal);
    await this.options.outputVolumes.release(volumes.output);
    if (list.length) log.info({ containers: list.map((c) => c.names[0] ?? c.id) }, 'removed what an earlier run left of this attempt; starting it again');
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

  /** /output -> safe tar -> gzip -> sha256 -> spool file, streaming end to end. */
  private async collect(exec: TaskExecution, id: string, maxOutputBytes: number): Promise<{ path: string; size: number; sha256: string }> {
    const path = join(this.options.spoolDir, `${exec.taskId}-${exec.attempt}.tar.gz`);
    const partial = `${path}.partial`;
    const raw = await this.engine.getArchive(id, OUTPUT_DIR, exec.signal);
    const filtered = safeTar(raw, {
      maxBytes: maxOutputBytes,
      maxEntries: this.defaults.maxEntries,
      symlinks: 'contained',
      stripComponents: 1, // Docker names entries "output/..."
      label: '/output',
    });
    const hash = createHash('sha256');
    const reclaimer = new BufferReclaimer();
    // The master refuses a larger archive (the same rule): say so here, before uploading it.
    const bound = resultArchiveBound(maxOutputBytes);
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (size + chunk.length > bound) {
          cb(new UnsafeArchiveError(`/output packs into more than ${bound} bytes, the most a result may take for a ${formatBytes(maxOutputBytes)} output cap (the cap, 1/128 of it and 1 MiB for tar headers and gzip): many small files take 512 bytes each in the archive; pack them into one`));
          return;
        }
        hash.update(chunk);
        size += chunk.length;
        // the uncompressed side churns ~as many bytes again; count both
        reclaimer.add(chunk.length * 2);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(filtered, gzipStream(), tap, createWriteStream(partial), { signal: exec.signal });
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      raw.destroy();
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        // The node's disk, not the task: say so, and what to do.
        throw new OutcomeError(
          OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR,
          `the worker's disk is full: the result archive did not fit in ${this.options.spoolDir} (${size} bytes written before the disk filled); free space there or lower --max-output`,
        );
      }
      throw err;
    }
    const st = await stat(path);
    if (st.size !== size) throw new Error(`result file ${path} has ${st.size} bytes, ${size} were written`);
    return { path, size, sha256: hash.digest('hex') };
  }

  /** Removes what the attempt created; false when something stayed (the reclaim takes it later). */
  private async cleanup(created: Created, log: Logger): Promise<boolean> {
    const signal = AbortSignal.timeout(this.options.cleanupTimeoutMs ?? 30_000);
    let clean = true;
    for (const id of created.containers) {
      try {
        await this.engine.removeContainer(id, signal);
      } catch (err) {
        clean = false;
        log.warn({ err: errorMessage(err), containerId: id }, 'could not remove the container; it is reclaimed once Docker answers again');
      }
    }
    const removed = new Set<string>();
    for (const v of created.volumes) {
      try {
        await this.engine.removeVolume(v, signal);
        removed.add(v);
      } catch (err) {
        clean = false;
        log.warn({ err: errorMessage(err), volume: v }, 'could not remove the volume; it is reclaimed once Docker answers again');
      }
    }
    // Only once Docker has let go of the volume: its filesystem is mounted until then.
    for (const v of created.outputFs) {
      if (created.volumes.includes(v) && !removed.has(v)) continue;
      try {
        await this.options.outputVolumes.release(v);
      } catch (err) {
        clean = false;
        log.warn({ err: errorMessage(err), volume: v }, 'could not free the /output filesystem; it is reclaimed later');
      }
    }
    return clean;
  }
}

/** What an attempt made, for its cleanup. */
interface Created {
  containers: string[];
  volumes: string[];
  /** Output volumes whose backing filesystem was made (or is being made). */
  outputFs: string[];
}

/** The rejection of an output over its cap, naming the cap and where it came from. */
export function overCapMessage(askedBytes: number, capBytes: number): string {
  const from = askedBytes > 0 && askedBytes <= capBytes ? 'the task\'s max_output_bytes' : 'the node\'s --max-output';
  return `task wrote more than the ${formatBytes(capBytes)} output cap (${from})`;
}

interface RunEnd {
  exitCode: number;
  oomKilled: boolean;
  stopped?: AbortReason | 'timeout';
  durationMs: number;
}

/** When the container's process started, or undefined when it never did ("0001-01-01..." in Docker). */
function startedAtMs(state: ContainerState): number | undefined {
  if (!state.startedAt) return undefined;
  const t = Date.parse(state.startedAt);
  return Number.isFinite(t) && t > 0 ? t : undefined;
}

/** Directory entries that, extracted at "/", give both volume roots to the task user. */
function volumeRootsTar(): Readable {
  const pack = tarStream.pack();
  for (const dir of [INPUT_DIR, OUTPUT_DIR]) {
    const name = `${dir.slice(1)}/`;
    const mode = dir === OUTPUT_DIR ? 0o777 : 0o755;
    (pack.entry({ name, type: 'directory', mode, uid: TASK_UID, gid: TASK_GID }) as unknown as { end(): void }).end();
  }
  pack.finalize();
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

export interface ReapResult {
  containers: string[];
  volumes: string[];
  /** /output filesystems freed (by volume name). */
  outputFs?: string[];
}

/**
 * Removes this node's labelled containers and volumes that no live task owns (after a crash).
 * Only objects carrying our managed + node-id labels are listed, so nothing else is touched.
 */
/**
 * Removes containers and volumes labelled with this node whose task `keep` does not hold. `keep` is
 * asked at removal time, so a task that starts while this runs is never touched.
 */
export async function reapOrphans(engine: ContainerEngine, nodeId: string, keep: { has(taskId: string): boolean }, signal?: AbortSignal, outputs?: OutputVolumes): Promise<ReapResult> {
  const filters = nodeLabelFilters(nodeId);
  const removed: ReapResult = { containers: [], volumes: [] };
  for (const c of await engine.listContainers(filters, signal)) {
    const taskId = c.labels[LABEL_TASK_ID];
    if (taskId !== undefined && keep.has(taskId)) continue;
    await engine.removeContainer(c.id, signal);
    removed.containers.push(c.names[0] ?? c.id);
  }
  for (const v of await engine.listVolumes(filters, signal)) {
    const taskId = v.labels[LABEL_TASK_ID];
    if (taskId !== undefined && keep.has(taskId)) continue;
    await engine.removeVolume(v.name, signal);
    removed.volumes.push(v.name);
  }
  if (outputs) {
    // Images are named after their volume; one whose task is not kept has no volume left (above).
    removed.outputFs = [];
    const live = new Set((await engine.listVolumes(filters, signal)).map((v) => v.name));
    for (const name of await outputs.list()) {
      const taskId = outputVolumeTaskId(name);
      if (live.has(name) || (taskId !== undefined && keep.has(taskId))) continue;
      await outputs.release(name);
      removed.outputFs.push(name);
    }
  }
  return removed;
}

/** The task id in an output volume's name (`hivemind-<taskId>-<attempt>-output`). */
function outputVolumeTaskId(name: string): string | undefined {
  return /^hivemind-(.+)-\d+-output$/.exec(name)?.[1];
}

export { containerName };
