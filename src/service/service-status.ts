// `hivemind service status`: installed or not, the service mode, the config, the data dir, and
// whether the worker runs (its pid; systemctl is-active under systemd; the task on Windows).
import { runningPid } from './background-worker.js';
import { ServiceActions } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import type { ServiceRun } from './service-install.js';
import { SERVICE_NAME, WINDOWS_TASK_NAME, type ServiceMode, type TargetOs } from './service-layout.js';
import { resolveSetup, type ServiceTargetOptions } from './service-setup.js';

/** `service status --json`: a stable object. */
export interface ServiceStatus {
  os: TargetOs;
  /** A config file is in place. */
  installed: boolean;
  /** "none" when nothing is installed. */
  service: ServiceMode;
  configFile: string;
  dataDir: string;
  /** The installed copy of the executable, or null when the service runs this command. */
  executable: string | null;
  /** The worker's pid from its pid file, when that process is alive. */
  pid: number | null;
  /** systemd: `systemctl is-active`'s answer; Windows: whether the task is registered ("registered" / "unregistered"); else null. */
  serviceState: string | null;
}

export function serviceStatus(host: ServiceHost, run: ServiceRun, o: ServiceTargetOptions): ServiceStatus {
  const a = new ServiceActions(host, run.program, true, o.os ?? host.machine.hostOs);
  const setup = resolveSetup(host, a, o, run.self, 'status');
  const { layout } = setup;
  const installed = host.fs.stat(layout.configFile)?.kind === 'file';
  let service: ServiceMode = setup.mode;
  let serviceState: string | null = null;
  if (layout.os === 'windows') {
    const registered = host.machine.hostOs === 'windows' && host.commands.succeeds(['schtasks', '/Query', '/TN', WINDOWS_TASK_NAME]);
    serviceState = registered ? 'registered' : 'unregistered';
    if (!installed && !registered && o.service === undefined) service = 'none';
  } else {
    const unit = host.fs.present(layout.unitFile);
    if (o.service === undefined) service = unit ? 'systemd' : installed ? (setup.mode === 'systemd' ? 'background' : setup.mode) : 'none';
    if (service === 'systemd') serviceState = host.commands.succeeds(['systemctl', 'is-active', '--quiet', `${SERVICE_NAME}.service`]) ? 'active' : 'inactive';
  }
  return {
    os: layout.os,
    installed,
    service,
    configFile: layout.configFile,
    dataDir: setup.dataDir,
    executable: setup.command[0] === layout.exe ? layout.exe : null,
    pid: runningPid(host, setup) ?? null,
    serviceState,
  };
}

export function formatServiceStatus(s: ServiceStatus): string {
  const rows: [string, string][] = [
    ['installed', s.installed ? 'yes' : 'no'],
    ['service', s.service],
    ['config', s.configFile],
    ['data dir', s.dataDir],
    ['executable', s.executable ?? 'this command (no installed copy)'],
    ['worker', s.pid === null ? 'not running' : `running, pid ${s.pid}`],
  ];
  if (s.serviceState !== null) rows.push([s.os === 'windows' ? 'task' : 'systemd', s.serviceState]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`).join('\n') + '\n';
}
