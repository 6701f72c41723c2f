#!/usr/bin/env node
// The `hivemind` executable: parses the command line, turns config errors into exit code 2 and
// other failures into a one-line message with exit code 1.
//
// Startup cost: a command loads only the module that registers it. `hivemind tasks` must not pay
// for the master, the worker, Docker's client or the monitor (they took ~0.5 s before the first
// byte), so this file imports only commander and small leaf modules statically; the command word
// on the line picks the entry of COMMAND_MODULES (command-table.ts) to import. Top-level help (or a word no entry
// names) loads them all, so help lists every command and commander reports unknown ones.
//
// Adding a command (the pattern; test/unit/cli-command-table.test.ts fails when it is not kept):
//   1. Register it in a module under commands/ from a `register…Commands(program, ctx, setExit)`
//      function, the way client-commands.ts does.
//   2. Put its top-level name in COMMAND_MODULES (command-table.ts), on the entry of that module
//      (or a new entry whose `register` does `await import('./commands/your-commands.js')`).
//   3. Keep heavy imports out of the registration's static graph when the command is a client
//      command: test/unit/cli-startup-modules.test.ts lists the modules `tasks`, `get`, `submit`,
//      `logs` and `--version` may not load (dockerode, express, better-sqlite3, the master...).
//      An action that needs one does `await import()` of it in its body.
import { Command, CommanderError } from 'commander';
import { versionLine } from '../common/build-info.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { CliContext } from './cli-context.js';
import { modulesFor, type RegisterDeps } from './command-table.js';

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  let ctx: CliContext | undefined;
  const program = new Command()
    .name('hivemind')
    .description('HiveMind: run compute tasks on volunteer/rented nodes, locked down in containers')
    // Not commander's .version(string): the commit may need git, which only --version should run.
    .option('-V, --version', 'print the version, commit and Node version')
    .option('-c, --config <file>', 'JSON config file with sections worker, master, client (env HIVEMIND_CONFIG)')
    .showHelpAfterError()
    .exitOverride();
  program.on('option:version', () => {
    process.stdout.write(`${versionLine()}\n`);
    throw new CommanderError(0, 'commander.version', versionLine());
  });
  try {
    const modules = modulesFor(argv.slice(2));
    if (modules.length > 0) {
      const [{ createCliContext }, makeLogger] = await Promise.all([
        import('./cli-context.js'),
        modules.some((m) => m.logs) ? import('./cli-logger.js').then((l) => l.cliLoggerFactory(process.env)) : undefined,
      ]);
      const deps: RegisterDeps = {
        ctx: () => (ctx ??= createCliContext(program.opts().config as string | undefined, process.env, makeLogger)),
        setExit: (c) => (exitCode = c),
      };
      // In table order, one after the other: help lists the commands in the order it always did.
      for (const m of modules) await m.register(program, deps);
    }
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')) return 0;
    // Loaded only on failure: the exit codes' module and the escaping pull in the protocol's
    // generated code, which `--version` and help never need.
    const [{ EXIT_BAD_CONFIG, EXIT_FAILURE }, { terminalSafe }] = await Promise.all([import('./exit-codes.js'), import('./terminal-text.js')]);
    if (err instanceof CommanderError) return EXIT_BAD_CONFIG;
    if (err instanceof ConfigError) {
      process.stderr.write(`hivemind: ${terminalSafe(err.message, { multiline: true })}\n`);
      return EXIT_BAD_CONFIG;
    }
    const grpc = typeof (err as { code?: unknown }).code === 'number';
    // Loaded only here: gRPC's status table is not needed by a command that succeeds.
    const message = grpc ? (await import('../protocol/grpc-errors.js')).describeGrpcError(err) : errorMessage(err);
    // Errors may quote the master's (or a node's) words: escaped like everything else printed.
    process.stderr.write(`hivemind: ${terminalSafe(message, { multiline: true })}\n`);
    return EXIT_FAILURE;
  }
}

/**
 * Exits once stdout and stderr have handed everything to the OS. Exiting explicitly keeps a
 * lingering gRPC channel from holding a finished command, but a write to a pipe the reader has
 * not emptied yet is still queued in the process: exiting at once cut `hivemind logs ID | tail`
 * short, losing the end of the log.
 */
function exitWhenFlushed(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  for (const s of [process.stdout, process.stderr]) {
    if (s.writableLength === 0 || s.destroyed) done();
    else s.write('', done);
  }
}

main(process.argv).then(exitWhenFlushed, async (err: unknown) => {
  const [{ EXIT_FAILURE }, { terminalSafe }] = await Promise.all([import('./exit-codes.js'), import('./terminal-text.js')]);
  process.stderr.write(`hivemind: ${terminalSafe(errorMessage(err), { multiline: true })}\n`);
  exitWhenFlushed(EXIT_FAILURE);
});
