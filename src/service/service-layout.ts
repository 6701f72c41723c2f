// Where an installed worker node lives on each platform: the executable, the config, the data and
// log directories, the systemd unit or the Windows task file, and the service mode. Pure: the
// environment and the one probe it needs (is systemd PID 1?) are parameters.

export type TargetOs = 'linux' | 'windows';
/** systemd unit, a background process with a pid file (no boot start), files only, or the Windows startup task. */
export type ServiceMode = 'systemd' | 'background' | 'none' | 'task';

export const SERVICE_NAME = 'hivemind-worker';
export const WINDOWS_TASK_NAME = 'HiveMindWorker';
/** systemd (and `worker stop`) wait the drain timeout plus this before they kill the worker. */
export const STOP_MARGIN_S = 30;

export interface ServiceLayout {
  os: TargetOs;
  binDir: string;
  /** Where an installed copy of the executable goes. */
  exe: string;
  configDir: string;
  configFile: string;
  defaultDataDir: string;
  logDir: string;
  /** Linux: the systemd unit. */
  unitFile: string;
  /** Windows: the task definition kept beside the config. */
  taskXml: string;
}

/**
 * The layout of `os`. Paths are joined with "/" as given (never normalised): on Windows they come
 * from ProgramW6432 / ProgramData and become backslashed only where Windows reads them.
 */
export function serviceLayout(os: TargetOs, binDir: string | undefined, env: NodeJS.ProcessEnv): ServiceLayout {
  if (os === 'linux') {
    const bin = binDir || '/usr/local/bin';
    return {
      os,
      binDir: bin,
      exe: `${bin}/hivemind`,
      configDir: '/etc/hivemind',
      configFile: '/etc/hivemind/worker.json',
      defaultDataDir: '/var/lib/hivemind',
      logDir: '/var/log/hivemind',
      unitFile: `/etc/systemd/system/${SERVICE_NAME}.service`,
      taskXml: '',
    };
  }
  const programFiles = env.ProgramW6432 || env.ProgramFiles || 'C:/Program Files';
  const programData = env.ProgramData || 'C:/ProgramData';
  const bin = binDir || `${programFiles}/HiveMind`;
  const configDir = `${programData}/HiveMind`;
  return {
    os,
    binDir: bin,
    exe: `${bin}/hivemind.exe`,
    configDir,
    configFile: `${configDir}/worker.json`,
    defaultDataDir: `${programData}/HiveMind/worker`,
    logDir: `${programData}/HiveMind/logs`,
    unitFile: '',
    taskXml: `${configDir}/${WINDOWS_TASK_NAME}.xml`,
  };
}

/** The mode when none is given: systemd when it is PID 1 (sd_booted: /run/systemd/system exists), else background; Windows: the task. */
export function defaultServiceMode(os: TargetOs, systemdBooted: boolean): ServiceMode {
  if (os === 'windows') return 'task';
  return systemdBooted ? 'systemd' : 'background';
}

/** A usage problem with the mode for this platform, if any. */
export function serviceModeProblem(os: TargetOs, mode: ServiceMode): string | undefined {
  if (os === 'windows' && mode !== 'task') return `--service ${mode} is for Linux; Windows uses a startup task`;
  if (os === 'linux' && mode === 'task') return '--service: expected systemd, background or none, got "task"';
  return undefined;
}

/** Seconds a stop waits: the drain timeout (rounded up to whole seconds) plus the margin. */
export function stopTimeoutSeconds(drainTimeoutMs: number): number {
  return Math.ceil(drainTimeoutMs / 1000) + STOP_MARGIN_S;
}

/** A path as Windows reads it: backslashes (MSYS turns /c/x into C:/x before the executable sees it). */
export function windowsPath(path: string): string {
  return path.replace(/\//g, '\\');
}
