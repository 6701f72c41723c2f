// `hivemind service install`: the executable (when one is given to copy), the config, the data
// and log directories, then the service, each only if it differs; idempotent.
import { ConfigError } from '../common/errors.js';
import { renderInstalledConfig } from './installed-config.js';
import { installLinuxService } from './linux-service.js';
import { ServiceActions, usageError } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import { checkPreconditions, resolveSetup, type ServiceTargetOptions } from './service-setup.js';
import { installWindowsTask, lockDownDir } from './windows-task.js';

export interface InstallOptions extends ServiceTargetOptions {
  token: string;
  master?: string;
  name?: string;
  maxTasks?: number;
  monitorPort?: number;
  /** An executable to copy into the bin dir, which the service then runs; else it runs `self`. */
  executable?: string;
  noStart: boolean;
  dryRun: boolean;
}

export interface ServiceRun {
  /** The name messages go under. */
  program: string;
  /** The command that runs this hivemind: the executable, or node and the CLI script. */
  self: readonly string[];
  /** Changes the caller made before (install.sh: dependencies), for the summary. */
  priorChanges?: number;
}

export async function installService(host: ServiceHost, run: ServiceRun, o: InstallOptions): Promise<void> {
  if (o.executable !== undefined && host.fs.stat(o.executable)?.kind !== 'file') throw usageError(`--executable: no such file: ${o.executable}`);
  const a = new ServiceActions(host, run.program, o.dryRun, o.os ?? host.machine.hostOs, run.priorChanges);
  const setup = resolveSetup(host, a, o, run.self, 'install', o.executable);
  const { layout } = setup;
  const windows = layout.os === 'windows';
  let config: string;
  try {
    config = renderInstalledConfig({ ...o, drainTimeout: setup.drain.text, allowUnboundedOutput: windows, dataDir: setup.dataDir }, layout.configFile);
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(err.message);
    throw err;
  }
  checkPreconditions(host, a, setup, `${run.program === 'install.sh' ? 'bash install.sh' : 'hivemind service install'}`);
  a.say(`installing the HiveMind worker (${layout.os}, service: ${setup.mode})`);

  let restart = false;
  if (o.executable !== undefined) {
    a.makeDir(layout.binDir, 0o755);
    restart = a.putFile(layout.exe, { from: o.executable }, 0o755) || restart;
  }
  if (a.makeDir(layout.configDir, windows ? 0o700 : 0o755) && windows) lockDownDir(a, layout.configDir);
  if (windows) {
    a.say("config: allowUnboundedOutput, because Docker Desktop has no loop devices to bound a task's /output with: its output is checked against its cap after it exits, and the Docker Desktop VM's disk bounds the rest");
  }
  restart = a.putFile(layout.configFile, Buffer.from(config), 0o600) || restart;
  if (a.makeDir(setup.dataDir, 0o700) && windows) lockDownDir(a, setup.dataDir);
  a.makeDir(layout.logDir, 0o750);

  if (windows) installWindowsTask(host, a, setup, restart, o.noStart);
  else await installLinuxService(host, a, setup, restart, o.noStart);
  a.summary();
}
