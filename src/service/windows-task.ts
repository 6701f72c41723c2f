// The worker as a Windows startup task (Task Scheduler, at boot, as SYSTEM). Windows has no
// SIGTERM and `schtasks /End` kills: `hivemind worker stop` asks the worker to drain through its
// data dir first (as on Linux), then /End ends the task (at once for a worker too old to take the
// request, or one still draining after the timeout).
import { workerStopArgv } from './background-worker.js';
import type { Cmd, ServiceActions } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import { WINDOWS_TASK_NAME, windowsPath } from './service-layout.js';
import type { ServiceSetup } from './service-setup.js';
import { renderWindowsTask } from './service-templates.js';

/**
 * A Windows command: run with its /switches, shown as typed in Git Bash (where install.sh runs),
 * in which MSYS would turn a lone /TN into a path: //TN.
 */
function winCmd(...argv: string[]): Cmd {
  return { argv, shown: argv.map((w) => (/^\/[A-Za-z]/.test(w) ? `/${w}` : w)).join(' ') };
}

const taskRegistered = (host: ServiceHost) => host.machine.hostOs === 'windows' && host.commands.succeeds(['schtasks', '/Query', '/TN', WINDOWS_TASK_NAME]);

export function windowsTaskText(setup: ServiceSetup): string {
  return renderWindowsTask({ command: setup.command, configFile: setup.layout.configFile, dataDir: setup.dataDir, logDir: setup.layout.logDir });
}

/** ProgramData is readable by every user: only SYSTEM and Administrators may read the token and identity. */
export function lockDownDir(a: ServiceActions, dir: string): void {
  a.mustRun(winCmd('icacls', windowsPath(dir), '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'));
}

function stopTask(a: ServiceActions, setup: ServiceSetup): void {
  a.run({ argv: workerStopArgv(setup) });
  a.run(winCmd('schtasks', '/End', '/TN', WINDOWS_TASK_NAME));
}

/** Writes the task XML, registers it when it changed or is missing, and (re)starts it. */
export function installWindowsTask(host: ServiceHost, a: ServiceActions, setup: ServiceSetup, restart: boolean, noStart: boolean): void {
  const xml = windowsTaskText(setup);
  const xmlChanged = a.putFile(setup.layout.taskXml, Buffer.from(xml), 0o644);
  if (a.dryRun) {
    a.print(`[dry-run] task ${WINDOWS_TASK_NAME} (${setup.layout.taskXml}):`);
    for (const line of xml.replace(/\n$/, '').split('\n')) a.print(`    ${line}`);
  }
  const registered = taskRegistered(host);
  if (xmlChanged || !registered) {
    a.changed(`register the startup task ${WINDOWS_TASK_NAME} (at boot, as SYSTEM)`);
    // schtasks reads task XML as UTF-16 (with its byte order mark)
    const scratch = host.machine.scratchDir(!a.dryRun);
    const xml16 = `${scratch}/task-utf16.xml`;
    if (!a.dryRun) host.fs.writeFileAtomic(xml16, Buffer.from(`\ufeff${xml}`, 'utf16le'), 0o600);
    try {
      a.mustRun(winCmd('schtasks', '/Create', '/TN', WINDOWS_TASK_NAME, '/XML', windowsPath(xml16), '/F'));
    } finally {
      if (!a.dryRun) host.fs.remove(scratch);
    }
    restart = true;
  }
  if (noStart) return a.say(`not starting it (--no-start): schtasks /Run /TN ${WINDOWS_TASK_NAME}`);
  if (!restart) return a.unchanged(`startup task ${WINDOWS_TASK_NAME}`);
  if (registered) stopTask(a, setup);
  a.changed(`start the task ${WINDOWS_TASK_NAME}`);
  a.mustRun(winCmd('schtasks', '/Run', '/TN', WINDOWS_TASK_NAME));
}

/** Stops the worker (it drains first) and deletes the task and its XML. */
export function uninstallWindowsTask(host: ServiceHost, a: ServiceActions, setup: ServiceSetup): void {
  if (a.dryRun || taskRegistered(host)) {
    a.changed(`stop and delete the startup task ${WINDOWS_TASK_NAME} (the worker drains first, up to ${setup.drain.text})`);
    stopTask(a, setup);
    a.mustRun(winCmd('schtasks', '/Delete', '/TN', WINDOWS_TASK_NAME, '/F'));
  }
  a.remove(setup.layout.taskXml);
}
