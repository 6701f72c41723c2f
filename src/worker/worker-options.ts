// The worker's options: raw as the CLI passes them, compiled once (defaults applied,
// validated with readable errors) so the rest of the worker reads plain numbers. A setting left
// out takes its value from WORKER_DEFAULTS (config/defaults.ts), the defaults the config file,
// the environment and the flags have too.
import path from 'node:path';
import { VERSION } from '../common/build-info.js';
import { ConfigError } from '../common/errors.js';
import { defaultBackoff, type BackoffOptions } from '../common/backoff.js';
import { WORKER_DEFAULTS } from '../config/defaults.js';
import { workerSpoolDir } from '../config/paths.js';

const D = WORKER_DEFAULTS;

export interface WorkerOptions {
  /** host:port of the master's NodeService. Required. */
  masterAddress: string;
  /** Enrollment token for the first registration; not needed once identity.json exists. */
  enrollmentToken?: string;
  /** Where identity.json, worker.db and the spool live. Required. */
  dataDir: string;
  /** Display name at the master. Default: the hostname. */
  name?: string;
  /** Free-form labels the master can schedule on. Default: none. */
  labels?: Record<string, string>;
  /** Concurrent tasks. */
  maxTasks?: number;
  /** Report interval. Default: the interval the master suggests at Register, else WORKER_DEFAULTS.reportIntervalMs. */
  reportIntervalMs?: number;
  /** CPU cores tasks may use in total. Default: all logical cores. */
  cpuCap?: number;
  /** Memory tasks may use in total. Default: total memory minus memoryReserveBytes. */
  memoryCapBytes?: number;
  /** Memory kept for the OS and the worker itself. */
  memoryReserveBytes?: number;
  /** CPUs a task with no CPU limit is accounted as. */
  taskDefaultCpus?: number;
  /** Memory a task with no memory limit is accounted as. */
  taskDefaultMemoryBytes?: number;
  /** How long drain() waits for running tasks before cancelling them. */
  drainTimeoutMs?: number;
  /** Task inputs and results in transit. Default: <dataDir>/spool. */
  spoolDir?: string;
  /** Stored resource samples are kept this long. */
  sampleMaxAgeMs?: number;
  /** ...and at most this many. */
  sampleMaxCount?: number;
  /** Reconnect backoff. Default: 250 ms doubling up to 30 s, with jitter. */
  backoff?: BackoffOptions;
  /** Live logs are flushed to the master at least this often. */
  logFlushMs?: number;
  /** Live log bytes held per task while the master is slow or away; older bytes are dropped. */
  logBufferBytes?: number;
  /** How often leftovers of earlier runs (containers, volumes, spool files) are looked for. */
  reclaimIntervalMs?: number;
  /** Reported in NodeFacts. Default: this package's version. */
  workerVersion?: string;
}

export interface CompiledWorkerOptions {
  masterAddress: string;
  enrollmentToken: string | undefined;
  dataDir: string;
  name: string | undefined;
  labels: Record<string, string>;
  maxTasks: number;
  reportIntervalMs: number | undefined;
  cpuCap: number | undefined;
  memoryCapBytes: number | undefined;
  memoryReserveBytes: number;
  taskDefaultCpus: number;
  taskDefaultMemoryBytes: number;
  drainTimeoutMs: number;
  spoolDir: string;
  sampleRetention: { maxAgeMs: number; maxCount: number };
  backoff: BackoffOptions;
  logFlushMs: number;
  logBufferBytes: number;
  reclaimIntervalMs: number;
  workerVersion: string;
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

export function compileWorkerOptions(raw: WorkerOptions): CompiledWorkerOptions {
  if (!raw.masterAddress || !/^[^\s]+:\d+$/.test(raw.masterAddress)) {
    throw new ConfigError(`master address "${raw.masterAddress ?? ''}" must be host:port (example: 127.0.0.1:7070)`);
  }
  if (!raw.dataDir) throw new ConfigError('a data directory is required (--data-dir)');
  const dataDir = path.resolve(raw.dataDir);
  for (const [k, v] of Object.entries(raw.labels ?? {})) {
    if (!k || typeof v !== 'string') throw new ConfigError(`label "${k}" must have a non-empty name and a string value`);
  }
  const drainTimeoutMs = raw.drainTimeoutMs ?? D.drainTimeoutMs;
  if (!Number.isFinite(drainTimeoutMs) || drainTimeoutMs < 0) throw new ConfigError(`drain timeout must be >= 0 ms, got ${drainTimeoutMs}`);
  return {
    masterAddress: raw.masterAddress,
    enrollmentToken: raw.enrollmentToken || undefined,
    dataDir,
    name: raw.name || undefined,
    labels: { ...(raw.labels ?? {}) },
    maxTasks: positive('maxTasks', raw.maxTasks, D.maxTasks, true),
    reportIntervalMs: optionalPositive('reportIntervalMs', raw.reportIntervalMs, true),
    cpuCap: optionalPositive('cpuCap', raw.cpuCap),
    memoryCapBytes: optionalPositive('memoryCapBytes', raw.memoryCapBytes, true),
    memoryReserveBytes: raw.memoryReserveBytes === 0 ? 0 : positive('memoryReserveBytes', raw.memoryReserveBytes, D.memoryReserveBytes, true),
    taskDefaultCpus: positive('taskDefaultCpus', raw.taskDefaultCpus, D.taskDefaultCpus),
    taskDefaultMemoryBytes: positive('taskDefaultMemoryBytes', raw.taskDefaultMemoryBytes, D.taskDefaultMemoryBytes, true),
    drainTimeoutMs,
    spoolDir: raw.spoolDir ? path.resolve(raw.spoolDir) : workerSpoolDir(dataDir),
    sampleRetention: {
      maxAgeMs: positive('sampleMaxAgeMs', raw.sampleMaxAgeMs, D.sampleMaxAgeMs, true),
      maxCount: positive('sampleMaxCount', raw.sampleMaxCount, D.sampleMaxCount, true),
    },
    backoff: raw.backoff ?? defaultBackoff,
    logFlushMs: positive('logFlushMs', raw.logFlushMs, D.logFlushMs, true),
    logBufferBytes: positive('logBufferBytes', raw.logBufferBytes, D.logBufferBytes, true),
    reclaimIntervalMs: positive('reclaimIntervalMs', raw.reclaimIntervalMs, D.reclaimIntervalMs),
    workerVersion: raw.workerVersion ?? VERSION,
  };
}
