// The worker's options: its settings (config/worker-settings.ts, with the names and the one
// defaulting function the CLI's config uses too) plus the master it talks to. Compiled once,
// in Worker.create, so the rest of the worker reads plain numbers.
import { ConfigError } from '../common/errors.js';
import { compileWorkerSettings, type CompiledWorkerSettings, type WorkerSettings } from '../config/worker-settings.js';

export interface WorkerOptions extends WorkerSettings {
  /** host:port of the master's NodeService. Required. */
  masterAddress: string;
  /**
   * Every master in the order they are tried, masterAddress first (masters sharing one store).
   * Default: masterAddress alone.
   */
  masterAddresses?: readonly string[] | undefined;
  /** Enrollment token for the first registration; not needed once identity.json exists. */
  enrollmentToken?: string | undefined;
}

export interface CompiledWorkerOptions extends CompiledWorkerSettings {
  masterAddress: string;
  masterAddresses: readonly string[];
  enrollmentToken: string | undefined;
}

export function compileWorkerOptions(raw: WorkerOptions): CompiledWorkerOptions {
  if (!raw.masterAddress || !/^[^\s]+:\d+$/.test(raw.masterAddress)) {
    throw new ConfigError(`master address "${raw.masterAddress ?? ''}" must be host:port (example: 127.0.0.1:7070)`);
  }
  const masterAddresses = raw.masterAddresses?.length ? raw.masterAddresses : [raw.masterAddress];
  if (masterAddresses[0] !== raw.masterAddress) {
    throw new ConfigError(`master address "${raw.masterAddress}" must be the first of the master addresses (${masterAddresses.join(', ')})`);
  }
  for (const a of masterAddresses) {
    if (!/^[^\s]+:\d+$/.test(a)) throw new ConfigError(`master address "${a}" must be host:port (example: 127.0.0.1:7070)`);
  }
  return {
    masterAddress: raw.masterAddress,
    masterAddresses,
    enrollmentToken: raw.enrollmentToken || undefined,
    ...compileWorkerSettings(raw),
  };
}
