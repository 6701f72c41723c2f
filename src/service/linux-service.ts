// The worker as a Linux service: a systemd unit (enabled, started, restarted when the executable,
// the config or the unit changed), a background process, or nothing but the files.
import { runningPid, startBackground, stopBackground } from './background-worker.js';
import type { ServiceActions } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import { SERVICE_NAME } from './service-layout.js';
import type { ServiceSetup } from './service-setup.js';
import { renderSystemdUnit } from './service-templates.js';

const UNIT = `${SERVICE_NAME}.service`;

export function systemdUnitText(setup: ServiceSetup): string {
  return renderSystemdUnit({ command: setup.command, configFile: setup.layout.configFile, dataDir: setup.dataDir, drainTimeout: setup.drain.text, drainTimeoutMs: setup.drain.ms });
}

/** Registers and starts the service; `restart` when the executable or the config changed. */
export async function installLinuxService(host: ServiceHost, a: ServiceActions, setup: ServiceSetup, restart: boolean, noStart: boolean): Promise<void> {
  const start = `${setup.command.join(' ')} --config ${setup.layout.configFile} worker start`;
  switch (setup.mode) {
    case 'systemd': {
      const unit = systemdUnitText(setup);
      const unitChanged = a.putFile(setup.layout.unitFile, Buffer.from(unit), 0o644);
      if (a.dryRun) {
        a.print(`[dry-run] unit ${setup.layout.unitFile}:`);
        for (const line of unit.replace(/\n$/, '').split('\n')) a.print(`    ${line}`);
      }
      if (unitChanged) a.mustRun({ argv: ['systemctl', 'daemon-reload'] });
      if (a.dryRun || !host.commands.succeeds(['systemctl', 'is-enabled', '--quiet', UNIT])) {
        a.changed(`enable ${UNIT} (starts at boot)`);
        a.mustRun({ argv: ['systemctl', 'enable', UNIT] });
      }
      if (noStart) return a.say(`not starting it (--no-start): systemctl start ${SERVICE_NAME}`);
      if (a.dryRun || !host.commands.succeeds(['systemctl', 'is-active', '--quiet', UNIT])) {
        a.changed(`start ${UNIT}`);
        a.mustRun({ argv: ['systemctl', 'start', UNIT] });
      } else if (restart || unitChanged) {
        a.changed(`restart ${UNIT} (it drains first, up to ${setup.drain.text})`);
        a.mustRun({ argv: ['systemctl', 'restart', UNIT] });
      } else {
        a.unchanged(`${UNIT} is enabled and running`);
      }
      return;
    }
    case 'background': {
      a.say(`no systemd here (PID 1 is ${host.machine.initName()}): the worker runs in the background and does NOT start at boot; start it from your init system with: ${start}`);
      if (noStart) return a.say('not starting it (--no-start)');
      const pid = runningPid(host, setup);
      if (pid === undefined) return startBackground(host, a, setup);
      if (!restart) return a.unchanged(`the worker is running (pid ${pid})`);
      stopBackground(host, a, setup);
      return startBackground(host, a, setup);
    }
    default:
      return a.say(`--service none: start it yourself with: ${start}`);
  }
}

/** Stops the worker (it drains first) and removes the unit. */
export function uninstallLinuxService(host: ServiceHost, a: ServiceActions, setup: ServiceSetup): void {
  if (setup.mode === 'systemd') {
    if (!a.dryRun && !host.fs.present(setup.layout.unitFile)) return;
    a.changed(`stop and disable ${UNIT} (it drains first, up to ${setup.drain.text})`);
    a.run({ argv: ['systemctl', 'disable', '--now', UNIT] });
    a.remove(setup.layout.unitFile);
    a.mustRun({ argv: ['systemctl', 'daemon-reload'] });
  } else if (setup.mode === 'background') {
    stopBackground(host, a, setup);
  }
}
