// Pure translation of a task execution into the locked-down Docker create options: every limit
// set, every privilege dropped, no network, read-only root, input/output on per-task volumes.
import { InvalidTaskError } from '../common/errors.js';
import { checkTaskSpec } from '../protocol/task-spec-rules.js';
import type { TaskExecution } from '../worker/contracts.js';
import type { ContainerCreateConfig } from './container-engine.js';
import type { EgressAttachment } from './egress-network.js';
import { TaskNetwork } from '../protocol/gen/hivemind/v1/common.js';
import { taskLabels } from './labels.js';
import { Isolation } from '../protocol/gen/hivemind/v1/common.js';
import { GVISOR_RUNTIME, gvisorPidsLimit } from './gvisor.js';
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_OUTPUT_BYTES } from '../protocol/result-bound.js';

/** What a task gets when its spec leaves a limit at 0. */
export interface RunnerDefaults {
  /** CPU cores (fractional allowed). Default 1. */
  cpus: number;
  /** Hard memory limit in bytes; swap is disabled. Default 512 MiB. */
  memoryBytes: number;
  /** Max processes/threads in the container. Default 256. */
  pids: number;
  /** Wall-clock limit from container start. Default 1 h. */
  timeoutMs: number;
  /**
   * Cap on the uncompressed /output tree: the node's `--max-output`, the default for a task that
   * sets none and the most a task may ask for (the /output filesystem is sized from it). Default 1 GiB.
   */
  maxOutputBytes: number;
  /** Cap on the uncompressed input tree written into /input. Default 1 GiB. */
  maxInputBytes: number;
  /** Max entries in /output (and in the input archive). Default 100 000. */
  maxEntries: number;
  /** Size of the /tmp tmpfs and of /dev/shm; both count against the memory limit. Default 64 MiB. */
  tmpfsBytes: number;
  /** Bytes of combined log kept as the task's log tail. Default 64 KiB. */
  logTailBytes: number;
  /** Engine-side log file cap, so a chatty task cannot fill the host disk. Default 10 MiB. */
  engineLogBytes: number;
  /** The runtime of a task that names none: runc, or gVisor on a node started with --isolation gvisor. */
  isolation: Isolation;
}

export const RUNNER_DEFAULTS: Readonly<RunnerDefaults> = Object.freeze({
  cpus: 1,
  memoryBytes: 512 * 1024 ** 2,
  pids: 256,
  timeoutMs: 3_600_000,
  maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
  maxInputBytes: DEFAULT_MAX_INPUT_BYTES,
  maxEntries: 100_000,
  tmpfsBytes: 64 * 1024 ** 2,
  logTailBytes: 64 * 1024,
  engineLogBytes: 10 * 1024 ** 2,
  isolation: Isolation.ISOLATION_RUNC,
});

export const TASK_UID = 65534;
export const TASK_GID = 65534;
export const INPUT_DIR = '/input';
export const OUTPUT_DIR = '/output';

/** The limits a task actually runs with, after defaults. */
export interface EffectiveLimits {
  cpus: number;
  memoryBytes: number;
  pids: number;
  gpus: number;
  timeoutMs: number;
  maxOutputBytes: number;
}

export function effectiveLimits(exec: Pick<TaskExecution, 'spec'>, defaults: RunnerDefaults = RUNNER_DEFAULTS): EffectiveLimits {
  const l = exec.spec.limits;
  return {
    cpus: l?.cpus && l.cpus > 0 ? l.cpus : defaults.cpus,
    memoryBytes: l?.memoryBytes && l.memoryBytes > 0 ? l.memoryBytes : defaults.memoryBytes,
    pids: l?.pids && l.pids > 0 ? l.pids : defaults.pids,
    gpus: l?.gpus && l.gpus > 0 ? l.gpus : 0,
    timeoutMs: l?.timeoutMs && l.timeoutMs > 0 ? l.timeoutMs : defaults.timeoutMs,
    // The node's cap bounds the task's: a task cannot make the node give it more disk.
    maxOutputBytes: exec.spec.maxOutputBytes > 0 ? Math.min(exec.spec.maxOutputBytes, defaults.maxOutputBytes) : defaults.maxOutputBytes,
  };
}

// Task ids end up in container and volume names, which Docker restricts to this alphabet.
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function containerName(taskId: string, attempt: number): string {
  return `hivemind-${taskId}-${attempt}`;
}

export function volumeNames(taskId: string, attempt: number): { input: string; output: string } {
  const base = containerName(taskId, attempt);
  return { input: `${base}-input`, output: `${base}-output` };
}

export function validateTaskIdentity(taskId: string, attempt: number): void {
  if (!TASK_ID_RE.test(taskId)) throw new InvalidTaskError(`task id "${taskId}" is not usable in a container name (letters, digits, _ . -; max 128)`);
  if (!Number.isInteger(attempt) || attempt < 0) throw new InvalidTaskError(`task ${taskId}: attempt ${attempt} is not a non-negative integer`);
}

/**
 * `egress`: the node's egress network when it offers one; a task asking for egress on a node
 * without it is refused (the master only places it on nodes that allow egress).
 */
export function buildContainerConfig(exec: TaskExecution, nodeId: string, defaults: RunnerDefaults = RUNNER_DEFAULTS, egress?: EgressAttachment): ContainerCreateConfig {
  const { taskId, attempt, spec } = exec;
  validateTaskIdentity(taskId, attempt);
  // The worker checked the spec when it took the assignment; checked again here because this
  // function is the last word on what reaches Docker.
  checkTaskSpec(spec);
  const limits = effectiveLimits(exec, defaults);
  if (exec.gpuIndexes.length !== limits.gpus) {
    throw new InvalidTaskError(`task ${taskId}: ${limits.gpus} GPU(s) requested but ${exec.gpuIndexes.length} index(es) reserved`);
  }

  const wantsEgress = spec.network === TaskNetwork.TASK_NETWORK_EGRESS;
  if (wantsEgress && !egress) throw new InvalidTaskError(`task ${taskId}: asks for the egress network, which this node does not offer (start it with --allow-egress)`);
  const labels = taskLabels(nodeId, taskId, attempt);
  const volumes = volumeNames(taskId, attempt);
  const env = [
    ...[...spec.env].map(([k, v]) => `${k}=${v}`),
    `HIVEMIND_TASK_ID=${taskId}`,
    `HIVEMIND_ATTEMPT=${attempt}`,
    `HIVEMIND_INPUT_DIR=${INPUT_DIR}`,
    `HIVEMIND_OUTPUT_DIR=${OUTPUT_DIR}`,
    `HIVEMIND_CPUS=${limits.cpus}`,
    `HIVEMIND_MEMORY_BYTES=${limits.memoryBytes}`,
    // A replica learns where it must listen (its own loopback is enough: the node reaches it there).
    ...(spec.service ? [`HIVEMIND_SERVICE=${spec.service.service}`, `HIVEMIND_REPLICA=${spec.service.replica}`, `HIVEMIND_PORT=${spec.service.port}`] : []),
  ];

  const config: ContainerCreateConfig = {
    name: containerName(taskId, attempt),
    Image: spec.image,
    Env: env,
    Labels: labels,
    User: `${TASK_UID}:${TASK_GID}`,
    Hostname: 'hivemind-task',
    NetworkDisabled: !wantsEgress,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      NanoCpus: Math.round(limits.cpus * 1e9),
      Memory: limits.memoryBytes,
      // Equal to Memory: the task gets no swap on top of its memory limit.
      MemorySwap: limits.memoryBytes,
      PidsLimit: limits.pids,
      NetworkMode: wantsEgress ? egress!.network : 'none',
      // An egress task gets IPv4 only: the network has no IPv6, and none is configured inside either.
      ...(wantsEgress ? { Dns: [...egress!.dns], Sysctls: { 'net.ipv6.conf.all.disable_ipv6': '1' } } : {}),
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': `rw,nosuid,nodev,size=${defaults.tmpfsBytes},mode=1777` },
      CapDrop: ['ALL'],
      CapAdd: [],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      IpcMode: 'private',
      // Set, not Docker's default (the daemon's --default-shm-size may be anything).
      ShmSize: defaults.tmpfsBytes,
      Mounts: [
        { Type: 'volume', Source: volumes.input, Target: INPUT_DIR, ReadOnly: true },
        { Type: 'volume', Source: volumes.output, Target: OUTPUT_DIR, ReadOnly: false },
        // The data sets: the cache's copy, shared by every task using it, so never writable.
        ...(exec.dataMounts ?? []).map((m) => ({ Type: 'bind' as const, Source: m.hostPath, Target: m.containerPath, ReadOnly: true })),
      ],
      // Two files of half the cap each: with a single file, rotation truncates the file under the
      // log follower, which then stops short of the end of the output (the part people read).
      LogConfig: { Type: 'json-file', Config: { 'max-size': String(Math.max(1, Math.floor(defaults.engineLogBytes / 2))), 'max-file': '2' } },
      AutoRemove: false,
    },
  };
  if (spec.command.length > 0) config.Cmd = [...spec.command];
  // Same lock-down under gVisor: runsc honours every option above (each proven in
  // test/integration/gvisor-runner.test.ts); it adds a user-space kernel in front of the host's.
  if ((spec.isolation || defaults.isolation) === Isolation.ISOLATION_GVISOR) {
    config.HostConfig.Runtime = GVISOR_RUNTIME;
    // The host's pids cgroup counts the sandbox's threads, not the task's processes (gvisorPidsLimit).
    config.HostConfig.PidsLimit = gvisorPidsLimit(limits.pids);
  }
  if (limits.gpus > 0) {
    config.HostConfig.DeviceRequests = [{ Driver: 'nvidia', DeviceIDs: exec.gpuIndexes.map(String), Capabilities: [['gpu']] }];
  }
  return config;
}
