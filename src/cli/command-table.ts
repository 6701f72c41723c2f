// The CLI's command table: which module registers which top-level command, so that main.ts
// imports only the one a command line needs (see the pattern in main.ts's header).
import type { Command } from 'commander';
import type { CliContext } from './cli-context.js';

/** What a command module's registration gets from main: the context (made on first use) and the exit code's setter. */
export interface RegisterDeps {
  ctx: () => CliContext;
  setExit: (code: number) => void;
}

export interface CommandModule {
  /** The top-level command words this module registers. */
  names: readonly string[];
  /** Its commands use ctx().logger (pino is loaded for them only). */
  logs?: boolean;
  register(program: Command, deps: RegisterDeps): Promise<void>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  {
    names: ['master', 'worker', 'dev', 'doctor', 'image'],
    logs: true,
    register: async (p, d) => (await import('./commands/server-commands.js')).registerServerCommands(p, d.ctx, d.setExit),
  },
  {
    names: ['submit', 'tasks', 'get', 'wait', 'logs', 'result', 'cancel', 'nodes', 'token'],
    register: async (p, d) => (await import('./commands/client-commands.js')).registerClientCommands(p, d.ctx, d.setExit),
  },
  { names: ['exec'], register: async (p, d) => (await import('./commands/exec-command.js')).registerExecCommand(p, d.ctx, d.setExit) },
  { names: ['run'], register: async (p, d) => (await import('./commands/run-command.js')).registerRunCommand(p, d.ctx, d.setExit) },
  {
    names: ['service'],
    register: async (p, d) => {
      const [install, app] = await Promise.all([import('./commands/service-commands.js'), import('./commands/service-app-commands.js')]);
      app.registerServiceAppCommands(install.registerServiceCommands(p, d.setExit), d.ctx);
    },
  },
  { names: ['data'], register: async (p, d) => (await import('./commands/data-commands.js')).registerDataCommands(p, d.ctx) },
  { names: ['__netns-connector'], register: async (p) => (await import('./commands/netns-connector-command.js')).registerNetnsConnectorCommand(p) },
];

/** Global options that take a value: the word after them is not the command. */
const VALUE_OPTIONS = new Set(['-c', '--config']);

/**
 * The command word of `args` (argv without node and the script), or undefined when there is none
 * (`hivemind`, `hivemind --help`, `hivemind -V`).
 */
export function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return args[i + 1];
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** The modules to load for `args`: the one naming its command; all of them for help or an unknown word; none for `--version`. */
export function modulesFor(args: readonly string[], modules: readonly CommandModule[] = COMMAND_MODULES): readonly CommandModule[] {
  const word = commandWord(args);
  if (word === undefined && args.some((a) => a === '-V' || a === '--version')) return [];
  const own = word === undefined ? undefined : modules.find((m) => m.names.includes(word));
  return own ? [own] : modules;
}
