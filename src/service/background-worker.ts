// Linux without systemd: the worker runs in the background with its pid file and its own log,
// started now (not at boot); stopping asks it to drain (`worker stop`) and waits.
import type { ServiceActions } from './service-actions.js';
import { ServiceError } from './service-actions.js';
import type { ServiceHost } from './service-host.js';
import { stopTimeoutSeconds } from './service-layout.js';
import type { ServiceSetup } from './service-setup.js';

/** How long a start waits for the worker to claim its pid file. */
const START_POLLS = 50;
const START_POLL_MS = 100;

/** The worker's pid when its pid file names a live process. */
export function runningPid(host: ServiceHost, setup: ServiceSetup): number | undefined {
  let text: string;
  try {
    text = host.fs.readFile(setup.pidFile).toString('utf8').trim();
  } catch {
    return undefined;
  }
  if (!/^[0-9]+$/.test(text)) return undefined;
  const pid = Number(text);
  return host.machine.processAlive(pid) ? pid : undefined;
}

/** The `worker stop` command: it asks the worker to drain and waits the drain timeout plus the margin. */
export function workerStopArgv(setup: ServiceSetup): string[] {
  return [...setup.command, 'worker', 'stop', '--data-dir', setup.dataDir, '--timeout', `${stopTimeoutSeconds(setup.drain.ms)}s`];
}

export function stopBackground(host: ServiceHost, actions: ServiceActions, setup: ServiceSetup): void {
  const pid = runningPid(host, setup);
  if (pid === undefined) return;
  actions.changed(`stop the worker (pid ${pid}): it drains for up to ${setup.drain.text}`);
  if (actions.dryRun) return;
  if (actions.run({ argv: workerStopArgv(setup) }) !== 0) host.machine.kill(pid);
}

export function workerStartArgv(setup: ServiceSetup): string[] {
  return [...setup.command, '--config', setup.layout.configFile, 'worker', 'start', '--log-file', `${setup.layout.logDir}/worker.log`];
}

export async function startBackground(host: ServiceHost, actions: ServiceActions, setup: ServiceSetup): Promise<void> {
  const { logDir } = setup.layout;
  actions.changed(`start the worker in the background (log ${logDir}/worker.log, pid file ${setup.pidFile})`);
  if (actions.dryRun) return;
  // the worker writes (and rotates) its log itself; worker.out keeps what it prints outside it
  const argv = workerStartArgv(setup);
  const out = `${logDir}/worker.out`;
  actions.print(`+ nohup ${argv.join(' ')} >>${out} 2>&1 &`);
  const child = host.commands.startBackground(argv, { ...host.env, HIVEMIND_HOME: setup.dataDir }, out);
  // a bad config or an unusable data dir ends it at once: wait until it has claimed its pid file
  for (let i = 1; i <= START_POLLS; i++) {
    if (child.exited() || !host.machine.processAlive(child.pid)) {
      let tail = '';
      try {
        tail = host.fs.readFile(out).toString('utf8').split('\n').slice(-21).join('\n');
      } catch {
        // nothing printed
      }
      if (tail) host.err(tail.replace(/\n$/, ''));
      throw new ServiceError(`the worker exited at start; its output is above (and in ${out}; its log in ${logDir}/worker.log)`);
    }
    if (runningPid(host, setup) === child.pid) break;
    await host.machine.sleep(START_POLL_MS);
    if (i === START_POLLS) actions.say(`warning: the worker (pid ${child.pid}) has not written ${setup.pidFile} yet`);
  }
  actions.say(`worker running in the background, pid ${child.pid}`);
}
