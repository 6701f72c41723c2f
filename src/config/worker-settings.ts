// The settings a worker runs with, however it is started: `hivemind worker start` compiles them
// from the config file, env and flags (worker-config.ts), a program passes them to Worker.create.
// Both go through compileWorkerSettings, the one function that applies their defaults
// (WORKER_DEFAULTS, defaults.ts) and checks them, so the worker reads plain numbers.
import path from 'node:path';
import { VERSION } from '../common/build-info.js';
import { ConfigError } from '../common/errors.js';
import { defaultBackoff, type BackoffOptions } from '../common/backoff.js';
import { WORKER_DEFAULTS } from './defaults.js';
import { workerSpoolDir } from './paths.js';
import { Isolation, type LimitKind } from '../protocol/gen/hivemind/v1/common.js';
import type { EngineName } from '../protocol/limit-rules.js';

const D = WORKER_DEFAULTS;

/** As given: only dataDir is required; a setting left out takes its default. */
export interface WorkerSettings {
  /** Where identity.json, worker.db and the spool live. Required. */
  dataDir: string;
  /** Task inputs and results in transit. Default: <dataDir>/spool. */
  spoolDir?: string | undefined;
  /** Display name at the master. Default: the hostname. */
  name?: string | undefined;
  /** Free-form labels the master can schedule on. Default: none. */
  labels?: Record<string, string> | undefined;
  /** Concurrent tasks. */
  maxTasks?: number | undefined;
  /** Report interval. Default: the interval the master suggests at Register, else WORKER_DEFAULTS.reportIntervalMs. */
  reportIntervalMs?: number | undefined;
  /** CPU cores tasks may use in total. Default: all logical cores. */
  cpus?: number | undefined;
  /** Memory tasks may use in total, in bytes. Default: total memory minus memoryReserveBytes. */
  memory?: number | undefined;
  /** Memory kept for the OS and the worker itself. */
  memoryReserveBytes?: number | undefined;
  /** CPUs a task with no CPU limit is accounted as. */
  taskDefaultCpus?: number | undefined;
  /** Memory a task with no memory limit is accounted as. */
  taskDefaultMemoryBytes?: number | undefined;
  /** How long drain() waits for running tasks before cancelling them. */
  drainTimeoutMs?: number | undefined;
  /**
   * How long a drain keeps the service replicas running for the master to hand them over (start
   * each one elsewhere, then cancel it here), counted from the drain's start; they are stopped once
   * this has passed and no batch task is left (at the latest at the drain timeout).
   */
  handoverWaitMs?: number | undefined;
  /** Stored resource samples are kept this long. */
  sampleMaxAgeMs?: number | undefined;
  /** ...and at most this many. */
  sampleMaxCount?: number | undefined;
  /** Reconnect backoff. Default: 250 ms doubling up to 30 s, with jitter. */
  backoff?: BackoffOptions | undefined;
  /** Live logs are flushed to the master at least this often. */
  logFlushMs?: number | undefined;
  /** Live log bytes held per task while the master is slow or away; older bytes are dropped. */
  logBufferBytes?: number | undefined;
  /** How often leftovers of earlier runs (containers, volumes, spool files) are looked for. */
  reclaimIntervalMs?: number | undefined;
  /** Reported in NodeFacts. Default: this package's version. */
  workerVersion?: string | undefined;
  /** The gateway pipe's port (service replicas); 0 = a free port. */
  gatewayPort?: number | undefined;
  /** Whether this node hosts service replicas. */
  services?: boolean | undefined;
  /** Whether this node takes exec sessions into its running tasks (`hivemind exec`). */
  exec?: boolean | undefined;
  /** The node's egress network and firewall are in place: it takes egress tasks (NodeFacts.allows_egress). */
  allowsEgress?: boolean | undefined;
  /**
   * The isolations this node offers (NodeFacts.isolations): decided at start from --isolation and
   * whether gVisor works here (runtime/isolation-choice.ts). Default: runc only.
   */
  isolations?: readonly Isolation[] | undefined;
  /** The container engine it runs tasks on (NodeFacts.engine), decided at start (runtime/engine-identity.ts). Default: docker. */
  engine?: EngineName | undefined;
  /**
   * The limits its engine cannot enforce (NodeFacts.unenforced_limits), decided at start
   * (runtime/engine-limits.ts); a task setting one is refused. Default: none (all hold).
   */
  unenforcedLimits?: readonly LimitKind[] | undefined;
}

/** Compiled: the same names, every default applied. Undefined where "not set" has a meaning of its own. */
export interface CompiledWorkerSettings {
  dataDir: string;
  spoolDir: string;
  name: string | undefined;
  labels: Record<string, string>;
  maxTasks: number;
  /** Undefined: the interval the master asks for at registration. */
  reportIntervalMs: number | undefined;
  /** Undefined: all cores. */
  cpus: number | undefined;
  /** Undefined: total memory minus memoryReserveBytes. */
  memory: number | undefined;
  memoryReserveBytes: number;
  taskDefaultCpus: number;
  taskDefaultMemoryBytes: number;
  drainTimeoutMs: number;
  handoverWaitMs: number;
  sampleMaxAgeMs: number;
  sampleMaxCount: number;
  backoff: BackoffOptions;
  logFlushMs: number;
  logBufferBytes: number;
  reclaimIntervalMs: number;
  workerVersion: string;
  gatewayPort: number;
  services: boolean;
  exec: boolean;
  allowsEgress: boolean;
  isolations: readonly Isolation[];
  engine: EngineName;
  unenforcedLimits: readonly LimitKind[];
}

function positive(name: string, v: number | undefined, dflt: number, integer = false): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new ConfigError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
  }
  return v;
}

function optionalPositive(name: string, v: number | undefined, integer = false): number | undefined {
  return v === undefined ? undefined : positive(name, v, 0, integer);
}

/** Applies the defaults and checks the values. Compiling compiled settings gives them back unchanged. */
export function compileWorkerSettings(raw: WorkerSettings): CompiledWorkerSettings {
  if (!raw.dataDir) throw new ConfigError('a data directory is required (--data-dir)');
  const dataDir = path.resolve(raw.dataDir);
  for (const [k, v] of Object.entries(raw.labels ?? {})) {
    if (!k || typeof v !== 'string') throw new ConfigError(`label "${k}" must have a non-empty name and a string value`);
  }
  const drainTimeoutMs = raw.drainTimeoutMs ?? D.drainTimeoutMs;
  const gatewayPort = raw.gatewayPort ?? D.gatewayPort;
  if (!Number.isInteger(gatewayPort) || gatewayPort < 0 || gatewayPort > 65535) throw new ConfigError(`gateway port must be an integer from 0 to 65535 (0 = a free port), got ${gatewayPort}`);
  if (!Number.isFinite(drainTimeoutMs) || drainTimeoutMs < 0) throw new ConfigError(`drain timeout must be >= 0 ms, got ${drainTimeoutMs}`);
  const handoverWaitMs = raw.handoverWaitMs ?? D.handoverWaitMs;
  if (!Number.isFinite(handoverWaitMs) || handoverWaitMs < 0) throw new ConfigError(`handover wait must be >= 0 ms, got ${handoverWaitMs}`);
  return {
    dataDir,
    spoolDir: raw.spoolDir ? path.resolve(raw.spoolDir) : workerSpoolDir(dataDir),
    name: raw.name || undefined,
    labels: { ...(raw.labels ?? {}) },
    maxTasks: positive('maxTasks', raw.maxTasks, D.maxTasks, true),
    reportIntervalMs: optionalPositive('reportIntervalMs', raw.reportIntervalMs, true),
    cpus: optionalPositive('cpus', raw.cpus),
    memory: optionalPositive('memory', raw.memory, true),
    memoryReserveBytes: raw.memoryReserveBytes === 0 ? 0 : positive('memoryReserveBytes', raw.memoryReserveBytes, D.memoryReserveBytes, true),
    taskDefaultCpus: positive('taskDefaultCpus', raw.taskDefaultCpus, D.taskDefaultCpus),
    taskDefaultMemoryBytes: positive('taskDefaultMemoryBytes', raw.taskDefaultMemoryBytes, D.taskDefaultMemoryBytes, true),
    drainTimeoutMs,
    handoverWaitMs,
    sampleMaxAgeMs: positive('sampleMaxAgeMs', raw.sampleMaxAgeMs, D.sampleMaxAgeMs, true),
    sampleMaxCount: positive('sampleMaxCount', raw.sampleMaxCount, D.sampleMaxCount, true),
    backoff: raw.backoff ?? defaultBackoff,
    logFlushMs: positive('logFlushMs', raw.logFlushMs, D.logFlushMs, true),
    logBufferBytes: positive('logBufferBytes', raw.logBufferBytes, D.logBufferBytes, true),
    reclaimIntervalMs: positive('reclaimIntervalMs', raw.reclaimIntervalMs, D.reclaimIntervalMs),
    workerVersion: raw.workerVersion ?? VERSION,
    gatewayPort,
    services: raw.services ?? D.services,
    exec: raw.exec ?? D.exec,
    allowsEgress: raw.allowsEgress ?? false,
    isolations: raw.isolations?.length ? [...raw.isolations] : [Isolation.ISOLATION_RUNC],
    engine: raw.engine ?? 'docker',
    unenforcedLimits: [...(raw.unenforcedLimits ?? [])],
  };
}
