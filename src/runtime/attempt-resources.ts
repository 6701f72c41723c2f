// What a task attempt makes in Docker and removes again: its volumes (/input filled through the
// safe tar filter, /output a bounded filesystem), the staging and task containers, and what an
// earlier process left of the same attempt.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { UnsafeArchiveError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { OutcomeKind } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskExecution } from '../worker/contracts.js';
import { gunzipStream, safeTar } from '../archive/safe-tar.js';
import { OutputFsUnavailableError, type OutputFsAttachment, type OutputVolumes } from './output-volume.js';
import type { ContainerCreateConfig, ContainerEngine } from './container-engine.js';
import { INPUT_DIR, OUTPUT_DIR, TASK_GID, TASK_UID, effectiveLimits, volumeNames, type RunnerDefaults } from './container-spec.js';
import { LABEL_ATTEMPT, nodeLabelFilters, taskLabels } from './labels.js';
import { OutcomeError, createOrStartFail } from './task-outcome.js';

/** What an attempt made, for its cleanup. */
export interface Created {
  containers: string[];
  volumes: string[];
  /** Output volumes whose backing filesystem was made (or is being made). */
  outputFs: string[];
}

export interface AttemptResourcesOptions {
  defaults: RunnerDefaults;
  outputVolumes: OutputVolumes;
  /** Cleanup calls (remove container/volumes) get this long, independent of the task's signal. */
  cleanupTimeoutMs: number;
}

export class AttemptResources {
  constructor(
    private readonly engine: ContainerEngine,
    private readonly options: AttemptResourcesOptions,
  ) {}

  /**
   * Creates volumes and the task container, and fills the volumes (when there is anything to
   * put there, see createContainer) through a never-started staging container: /input is read-only in the task container, and Docker refuses archive writes to
   * read-only mounts. The staging container also makes both volume roots owned by the task user,
   * so /output is writable even for images that have no /output directory.
   */
  async prepare(exec: TaskExecution, nodeId: string, config: ContainerCreateConfig, created: Created, log: Logger): Promise<string> {
    const volumes = await this.createVolumes(exec, nodeId, created);
    return this.createContainer(exec, config, created, log, volumes);
  }

  /**
   * The attempt's two volumes, made side by side: the plain /input volume and /output's bounded
   * filesystem (mkfs, losetup) need nothing of each other. Needs no image, so it can overlap the
   * image check.
   */
  async createVolumes(exec: TaskExecution, nodeId: string, created: Created): Promise<MadeVolumes> {
    const signal = exec.signal;
    const { defaults } = this.options;
    const labels = taskLabels(nodeId, exec.taskId, exec.attempt);
    const volumes = volumeNames(exec.taskId, exec.attempt);
    const cap = effectiveLimits(exec, defaults).maxOutputBytes;
    // /input is read-only in the task container and filled here through the size-checked input
    // filter, so a plain volume; /output gets a filesystem of its own that ends at the cap.
    const input = (async () => {
      await this.engine.createVolume(volumes.input, labels, signal);
      created.volumes.push(volumes.input);
    })();
    const output = (async () => {
      let outputFs: OutputFsAttachment | undefined;
      created.outputFs.push(volumes.output);
      try {
        outputFs = await this.options.outputVolumes.create(volumes.output, cap, defaults.maxEntries);
      } catch (err) {
        if (err instanceof OutputFsUnavailableError) {
          throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, `not started: this node could not make the task's bounded /output: ${err.message}`);
        }
        throw err;
      }
      // A filesystem the worker mounted is bound in: there is no engine volume to make.
      if (outputFs && 'hostPath' in outputFs) return outputFs;
      await this.engine.createVolume(volumes.output, labels, signal, outputFs?.driverOptions);
      created.volumes.push(volumes.output);
      return outputFs;
    })();
    // Both settle before a failure is thrown: `created` must list all that exists for the cleanup.
    const [, outputFs] = await settledAll([input, output]);
    return { outputRootOwned: outputFs !== undefined, ...(outputFs && 'hostPath' in outputFs ? { outputHostPath: outputFs.hostPath } : {}) };
  }

  /**
   * The task container, once the volumes exist, after filling them through the staging container
   * when there is anything to put there. A task without input whose /output is a filesystem made
   * with the task user owning its root needs none: its /input stays empty and is read-only to it
   * anyway, and /output is already its own. That saves a container create, an archive write and
   * a removal (some 70 ms on a no-op task).
   */
  async createContainer(exec: TaskExecution, config: ContainerCreateConfig, created: Created, log: Logger, volumes: MadeVolumes): Promise<string> {
    if (volumes.outputHostPath !== undefined) config = withOutputBind(config, volumes.outputHostPath);
    if (!needsStaging(exec, volumes)) {
      const id = await createOrStartFail(() => this.engine.createContainer(config, exec.signal));
      created.containers.push(id);
      return id;
    }
    const signal = exec.signal;
    const { defaults } = this.options;
    const stagingId = await createOrStartFail(() =>
      this.engine.createContainer(
        {
          ...config,
          name: `${config.name}-staging`,
          Cmd: ['/hivemind-staging-never-started'],
          // Writable root only here: the volume-root entries are extracted at "/", and this
          // container never runs. The data sets are not mounted here: nothing may write the cache.
          HostConfig: {
            ...config.HostConfig,
            ReadonlyRootfs: false,
            Mounts: config.HostConfig.Mounts.filter((m) => m.Type === 'volume').map((m) => ({ ...m, ReadOnly: false })),
          },
        },
        signal,
      ),
    );
    created.containers.push(stagingId);
    await this.engine.putArchive(stagingId, '/', volumeRootsTar(), signal);
    if (exec.inputFile) {
      const input = safeTar(gunzipStream(createReadStream(exec.inputFile)), {
        maxBytes: defaults.maxInputBytes,
        maxEntries: defaults.maxEntries,
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
    // The volumes are filled: the staging container's removal and the task container's creation
    // touch nothing of each other, so they go side by side.
    const removeStaging = (async () => {
      await this.engine.removeContainer(stagingId, signal);
      created.containers.splice(created.containers.indexOf(stagingId), 1);
    })();
    const createTask = (async () => {
      const id = await createOrStartFail(() => this.engine.createContainer(config, signal));
      created.containers.push(id);
      return id;
    })();
    const [, id] = await settledAll([removeStaging, createTask]);
    return id;
  }

  /** Removes what an earlier process left of this attempt (containers, volumes) before a fresh run. */
  async discard(exec: TaskExecution, nodeId: string, log: Logger): Promise<void> {
    const list = await this.engine.listContainers([...nodeLabelFilters(nodeId, exec.taskId), `${LABEL_ATTEMPT}=${exec.attempt}`], exec.signal);
    for (const c of list) await this.engine.removeContainer(c.id, exec.signal);
    const volumes = volumeNames(exec.taskId, exec.attempt);
    for (const v of Object.values(volumes)) await this.engine.removeVolume(v, exec.signal);
    await this.options.outputVolumes.release(volumes.output);
    if (list.length) log.info({ containers: list.map((c) => c.names[0] ?? c.id) }, 'removed what an earlier run left of this attempt; starting it again');
  }

  /** Removes what the attempt created; false when something stayed (the reclaim takes it later). */
  async cleanup(created: Created, log: Logger): Promise<boolean> {
    const signal = AbortSignal.timeout(this.options.cleanupTimeoutMs);
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

/** What createVolumes made, as far as the container step cares. */
export interface MadeVolumes {
  /** /output is a filesystem of its own whose root the task user owns (OutputVolumes.create gave options). */
  outputRootOwned: boolean;
  /** The host directory the worker mounted /output's filesystem at, bound in instead of a volume. */
  outputHostPath?: string;
}

/** `config` with /output bound from `hostPath` instead of its engine volume. */
export function withOutputBind(config: ContainerCreateConfig, hostPath: string): ContainerCreateConfig {
  const Mounts = config.HostConfig.Mounts.map((m) => (m.Target === OUTPUT_DIR ? { Type: 'bind' as const, Source: hostPath, Target: OUTPUT_DIR, ReadOnly: false } : m));
  return { ...config, HostConfig: { ...config.HostConfig, Mounts } };
}

/** Whether the volumes must be filled through a staging container: an input to unpack, or a plain /output to give to the task user. */
export function needsStaging(exec: Pick<TaskExecution, 'inputFile'>, volumes: MadeVolumes): boolean {
  return exec.inputFile !== undefined || !volumes.outputRootOwned;
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

/**
 * Promise.all that waits for every promise to settle before it rejects (with the first failure in
 * order): what the others made is then recorded for the cleanup, and none still runs behind it.
 */
export async function settledAll<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
