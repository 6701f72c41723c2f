// `hivemind service uninstall`: stops the worker (it drains first), removes the service and the
// installed executable, and keeps the config, data and logs unless purging.
import { uninstallLinuxService } from './linux-service.js';
import { ServiceActions } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import type { ServiceRun } from './service-install.js';
import { checkPreconditions, resolveSetup, type ServiceTargetOptions } from './service-setup.js';
import { uninstallWindowsTask } from './windows-task.js';

export interface UninstallOptions extends ServiceTargetOptions {
  /** Also remove the config, the data dir and the logs. */
  purge: boolean;
  dryRun: boolean;
}

export async function uninstallService(host: ServiceHost, run: ServiceRun, o: UninstallOptions): Promise<void> {
  const a = new ServiceActions(host, run.program, o.dryRun, o.os ?? host.machine.hostOs, run.priorChanges);
  const setup = resolveSetup(host, a, o, run.self, 'uninstall');
  const { layout } = setup;
  checkPreconditions(host, a, setup, `${run.program === 'install.sh' ? 'bash install.sh' : 'hivemind service uninstall'}`);
  a.say(`uninstalling the HiveMind worker (${layout.os})`);
  if (layout.os === 'linux') uninstallLinuxService(host, a, setup);
  else uninstallWindowsTask(host, a, setup);
  a.remove(layout.exe);
  if (o.purge) {
    a.remove(layout.configFile);
    a.remove(setup.dataDir);
    a.remove(layout.logDir);
    if (host.fs.stat(layout.configDir)?.kind === 'dir' && host.fs.list(layout.configDir).length === 0) a.remove(layout.configDir);
  } else {
    a.say(`kept: config ${layout.configFile}, data ${setup.dataDir} (identity, history), logs ${layout.logDir}; --purge removes them`);
  }
  a.summary();
}
