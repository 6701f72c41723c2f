// The config file an installed node runs with: written from the install options and read back
// (its data dir and drain timeout) through the worker's own config schema, so that what the
// installer writes is exactly what `worker start` accepts.
import { errorMessage } from '../common/errors.js';
import { durationText } from '../common/units.js';
import { WORKER_DEFAULTS } from '../config/defaults.js';
import { compileWorkerConfig } from '../config/worker-config.js';

/** The drain timeout as written (for messages) and in milliseconds. */
export interface DrainTimeout {
  text: string;
  ms: number;
}

export const DEFAULT_DRAIN_TIMEOUT: DrainTimeout = { text: durationText(WORKER_DEFAULTS.drainTimeoutMs), ms: WORKER_DEFAULTS.drainTimeoutMs };

export interface InstalledConfigInput {
  master?: string;
  token: string;
  name?: string;
  maxTasks?: number;
  monitorPort?: number;
  drainTimeout: string;
  /** Docker Desktop has no loop devices to bound /output with: without this the worker refuses to start. */
  allowUnboundedOutput: boolean;
  dataDir: string;
}

/** Compiles a config file's "worker" section as `worker start` would, without env or flags. */
function compile(file: Record<string, unknown>, filePath: string, fileText?: string) {
  return compileWorkerConfig({ file, filePath, fileText, env: {}, flags: {} });
}

/**
 * The config file's bytes: one key per line, in a fixed order, the options left out omitted.
 * Throws a ConfigError when the worker would refuse it.
 */
export function renderInstalledConfig(c: InstalledConfigInput, filePath: string): string {
  const worker: Record<string, unknown> = {};
  if (c.master !== undefined) worker.master = c.master;
  worker.token = c.token;
  if (c.name !== undefined) worker.name = c.name;
  if (c.maxTasks !== undefined) worker.maxTasks = c.maxTasks;
  if (c.monitorPort !== undefined) worker.monitorPort = c.monitorPort;
  worker.drainTimeout = c.drainTimeout;
  if (c.allowUnboundedOutput) worker.allowUnboundedOutput = true;
  worker.dataDir = c.dataDir;
  const text = `${JSON.stringify({ worker }, null, 2)}\n`;
  compile({ worker }, filePath, text);
  return text;
}

/** What an uninstall or a re-run takes from the installed config. */
export interface InstalledSettings {
  /** Set when the file names one. */
  dataDir?: string;
  drainTimeout: DrainTimeout;
}

/** Thrown when the installed config cannot be read: the caller names the options that avoid reading it. */
export class InstalledConfigError extends Error {
  override readonly name = 'InstalledConfigError';
}

/** Reads the settings of the installed config's text through the worker's schema. */
export function parseInstalledConfig(text: string, filePath: string): InstalledSettings {
  let worker: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('it is not a JSON object');
    const compiled = compile(parsed as Record<string, unknown>, filePath, text);
    const section = (parsed as { worker?: unknown }).worker;
    if (typeof section === 'object' && section !== null) worker = section as Record<string, unknown>;
    const raw = worker.drainTimeout;
    return {
      dataDir: typeof worker.dataDir === 'string' ? compiled.dataDir : undefined,
      drainTimeout: raw === undefined ? DEFAULT_DRAIN_TIMEOUT : { text: typeof raw === 'string' ? raw : durationText(compiled.drainTimeoutMs), ms: compiled.drainTimeoutMs },
    };
  } catch (err) {
    throw new InstalledConfigError(`the installed config ${filePath} cannot be read: ${errorMessage(err)}`);
  }
}
