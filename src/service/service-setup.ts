// What install, uninstall and status share: the layout for the target platform, the service
// mode, the data dir (a re-run keeps the installed node's), the drain timeout, the command the
// service runs, and the checks before anything is changed.
import { ConfigError } from '../common/errors.js';
import { parseDuration } from '../common/units.js';
import { DEFAULT_DRAIN_TIMEOUT, InstalledConfigError, parseInstalledConfig, type DrainTimeout, type InstalledSettings } from './installed-config.js';
import { ServiceError, usageError, type ServiceActions } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import { defaultServiceMode, serviceLayout, serviceModeProblem, type ServiceLayout, type ServiceMode, type TargetOs } from './service-layout.js';

/** The options every `hivemind service` command takes. */
export interface ServiceTargetOptions {
  os?: TargetOs;
  binDir?: string;
  dataDir?: string;
  service?: ServiceMode;
  drainTimeout?: string;
}

export interface ServiceSetup {
  layout: ServiceLayout;
  mode: ServiceMode;
  dataDir: string;
  drain: DrainTimeout;
  /** The command the service runs and stops the worker with. */
  command: readonly string[];
  /** The worker's pid file (the worker writes it itself). */
  pidFile: string;
}

export function parseDrainTimeout(text: string): DrainTimeout {
  try {
    return { text, ms: parseDuration(text, '--drain-timeout') };
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(`--drain-timeout: "${text}" is not a duration (examples: 30s, 10m, 1h30m)`);
    throw err;
  }
}

/** The installed config's settings, when there is one to read. */
function installedSettings(host: ServiceHost, layout: ServiceLayout): InstalledSettings | undefined {
  if (host.fs.stat(layout.configFile)?.kind !== 'file') return undefined;
  try {
    return parseInstalledConfig(host.fs.readFile(layout.configFile).toString('utf8'), layout.configFile);
  } catch (err) {
    if (err instanceof InstalledConfigError) throw new ServiceError(`${err.message}; pass --data-dir DIR (and --drain-timeout DUR) to do without it`);
    throw err;
  }
}

/**
 * Resolves the setup. `useInstalledDrain`: an uninstall stops the worker with the drain timeout it
 * was installed with; an install writes the given one or the default.
 */
export function resolveSetup(host: ServiceHost, actions: ServiceActions, o: ServiceTargetOptions, self: readonly string[], purpose: 'install' | 'uninstall' | 'status', executable?: string): ServiceSetup {
  const os = o.os ?? host.machine.hostOs;
  const layout = serviceLayout(os, o.binDir, host.env);
  const mode = o.service ?? defaultServiceMode(os, host.machine.systemdBooted());
  const problem = serviceModeProblem(os, mode);
  if (problem) throw usageError(problem);
  const given = o.drainTimeout === undefined ? undefined : parseDrainTimeout(o.drainTimeout);
  // A re-run without --data-dir keeps the installed node's data dir: the default one would hold a
  // fresh identity (a new node, and an enrollment token that is usually used up), and an uninstall
  // would look for the worker, and purge, in the wrong place.
  const needDrain = purpose !== 'install' && given === undefined;
  const installed = o.dataDir === undefined || needDrain ? installedSettings(host, layout) : undefined;
  let dataDir = o.dataDir;
  if (dataDir === undefined && installed?.dataDir !== undefined) {
    dataDir = installed.dataDir;
    if (dataDir !== layout.defaultDataDir && purpose !== 'status') actions.say(`data dir ${dataDir}, from ${layout.configFile} (--data-dir DIR to choose another)`);
  }
  dataDir ??= layout.defaultDataDir;
  const drain = given ?? (needDrain ? installed?.drainTimeout : undefined) ?? DEFAULT_DRAIN_TIMEOUT;
  const installedExe = executable !== undefined || host.fs.stat(layout.exe)?.kind === 'file';
  return { layout, mode, dataDir, drain, command: installedExe ? [layout.exe] : self, pidFile: `${dataDir}/worker.pid` };
}

/** Before any change: a dry run says so; a real one must target this machine and run as root / Administrator. */
export function checkPreconditions(host: ServiceHost, actions: ServiceActions, setup: ServiceSetup, what: string): void {
  const os = setup.layout.os;
  if (actions.dryRun) {
    actions.say('dry run: nothing will be changed');
  } else if (host.machine.hostOs !== os) {
    throw usageError(`--os ${os} on a ${host.machine.hostOs} machine works only with --dry-run`);
  } else if (!host.machine.isAdmin()) {
    if (os === 'linux') throw new ServiceError(`run as root (sudo ${what} ...): it writes ${setup.layout.exe}, ${setup.layout.configDir} and the service`);
    throw new ServiceError(`run as Administrator: it writes ${setup.layout.binDir} and registers a startup task`);
  }
}
