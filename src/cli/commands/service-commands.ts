// `hivemind service install | uninstall | status`: the node as a service of this machine (systemd
// unit, background process or Windows startup task). install.sh fetches the executable and the
// dependencies, then runs these with --caller install.sh so that they speak under its name.
import { Command, InvalidArgumentError, Option } from 'commander';
import { isStandalone } from '../../common/embedded-assets.js';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { WORKER_DEFAULTS } from '../../config/defaults.js';
import { DEFAULT_DRAIN_TIMEOUT } from '../../service/installed-config.js';
import { nodeServiceHost } from '../../service/node-service-host.js';
import { ServiceError } from '../../service/service-actions.js';
import { installService, type ServiceRun } from '../../service/service-install.js';
import type { ServiceMode, TargetOs } from '../../service/service-layout.js';
import type { ServiceTargetOptions } from '../../service/service-setup.js';
import { formatServiceStatus, serviceStatus } from '../../service/service-status.js';
import { uninstallService } from '../../service/service-uninstall.js';
import { EXIT_BAD_CONFIG, EXIT_FAILURE } from '../exit-codes.js';
import { terminalSafe, terminalSafeJson } from '../terminal-text.js';

/** Where a service command speaks and what it reads: not the CLI context, whose --config file (or
 * HIVEMIND_CONFIG) is the worker's business, not the installer's. */
export interface ServiceIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const processIo = (): ServiceIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

const DEFAULT_PROGRAM = 'hivemind service';

/** This hivemind as a command: the standalone executable, or node and the CLI script. */
function selfCommand(): string[] {
  return isStandalone() || !process.argv[1] ? [process.execPath] : [process.execPath, process.argv[1]];
}

function wholeNumber(min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`a whole number from ${min} to ${max}`);
    return n;
  };
}

/** The options of every service command, and the hidden ones install.sh passes. */
function targetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--os <os>', 'target platform (default: this one); another works only with --dry-run').choices(['linux', 'windows']))
    .addOption(new Option('--service <mode>', 'Linux: systemd (default when PID 1 is systemd), background or none; Windows: task').choices(['systemd', 'background', 'none', 'task']))
    .option('--data-dir <dir>', 'the node\'s data dir (default: the installed config\'s, else /var/lib/hivemind or %ProgramData%\\HiveMind\\worker)')
    .option('--bin-dir <dir>', 'where an installed copy of the executable lives (default /usr/local/bin or %ProgramW6432%\\HiveMind)')
    .addOption(new Option('--caller <name>', 'the program the messages are from').default(DEFAULT_PROGRAM).hideHelp())
    .addOption(new Option('--prior-changes <n>', 'changes the caller already made').argParser(Number).default(0).hideHelp());
}

function target(o: Record<string, unknown>): ServiceTargetOptions {
  return { os: o.os as TargetOs | undefined, service: o.service as ServiceMode | undefined, dataDir: o.dataDir as string | undefined, binDir: o.binDir as string | undefined, drainTimeout: o.drainTimeout as string | undefined };
}

/** Registers `service` with install, uninstall and status; returns it for the network services' subcommands (service-app-commands.ts). */
export function registerServiceCommands(program: Command, setExit: (code: number) => void, io: () => ServiceIo = processIo): Command {
  const service = program
    .command('service')
    .description(
      'services on the network: create, ls, get, logs, scale, rm, token (replicas reached through the master\'s gateway); ' +
        'and this machine\'s worker service: install, uninstall, status (systemd, background, Windows task)',
    );

  /** Runs a service command: its failures are printed under the caller's name, with exit 1 (2 for bad usage). */
  const action = (fn: (c: ServiceIo, run: ServiceRun, o: Record<string, unknown>) => Promise<void> | void) => async (o: Record<string, unknown>) => {
    const c = io();
    const run: ServiceRun = { program: String(o.caller), self: selfCommand(), priorChanges: Number(o.priorChanges) || 0 };
    try {
      await fn(c, run, o);
    } catch (err) {
      const code = err instanceof ServiceError ? err.exitCode : err instanceof ConfigError ? EXIT_BAD_CONFIG : EXIT_FAILURE;
      c.stderr.write(`${run.program}: ${terminalSafe(errorMessage(err), { multiline: true })}\n`);
      if (code === EXIT_BAD_CONFIG) c.stderr.write(`${run.program}: see ${run.program === DEFAULT_PROGRAM ? 'hivemind service --help' : `${run.program} --help`}\n`);
      setExit(code);
    }
  };

  targetOptions(service.command('install'))
    .description('write the worker config, register the service (systemd unit, background process or Windows startup task) and start the worker; a re-run with the same options changes nothing')
    .requiredOption('--token <token>', 'join token (hmj1.…) or enrollment token (hm1.…, needs --master)')
    .option('--master <host:port,...>', 'address of a development master, or several comma-separated masters sharing one store')
    .option('--name <name>', 'node display name (default: the hostname)')
    .option('--max-tasks <n>', `concurrent tasks (default ${WORKER_DEFAULTS.maxTasks})`, wholeNumber(1, 256))
    .option('--drain-timeout <duration>', `how long a stop lets running tasks finish (default ${DEFAULT_DRAIN_TIMEOUT.text})`)
    .option('--monitor-port <port>', `local web monitor port, 0 = off (default ${WORKER_DEFAULTS.monitorPort})`, wholeNumber(0, 65535))
    .option('--executable <path>', 'copy this executable into --bin-dir and run that (default: the service runs this hivemind, no copy)')
    .option('--no-start', 'register the service, but do not start the worker now')
    .option('--dry-run', 'print every action and change nothing')
    .action(
      action((c, run, o) =>
        installService(nodeServiceHost(c.stdout, c.stderr, c.env), run, {
          ...target(o),
          token: o.token as string,
          master: o.master as string | undefined,
          name: o.name as string | undefined,
          maxTasks: o.maxTasks as number | undefined,
          monitorPort: o.monitorPort as number | undefined,
          executable: o.executable as string | undefined,
          noStart: o.start === false,
          dryRun: o.dryRun === true,
        }),
      ),
    );

  targetOptions(service.command('uninstall'))
    .description('stop the worker (it drains first), remove the service and the installed executable; keep config, data and logs')
    .option('--drain-timeout <duration>', 'how long the stop lets running tasks finish (default: the installed config\'s)')
    .option('--purge', 'also remove the config, the data dir and the logs')
    .option('--dry-run', 'print every action and change nothing')
    .action(action((c, run, o) => uninstallService(nodeServiceHost(c.stdout, c.stderr, c.env), run, { ...target(o), purge: o.purge === true, dryRun: o.dryRun === true })));

  targetOptions(service.command('status'))
    .description('say whether the worker service is installed, how it runs, where its config and data are, and whether the worker runs')
    .option('--json', 'print a JSON object')
    .action(
      action((c, run, o) => {
        const s = serviceStatus(nodeServiceHost(c.stdout, c.stderr, c.env), run, target(o));
        if (o.json) c.stdout.write(`${terminalSafeJson(s)}\n`);
        else c.stdout.write(formatServiceStatus(s));
      }),
    );
  return service;
}
