#!/usr/bin/env node
// The `hivemind` executable: parses the command line, turns config errors into exit code 2 and
// other failures into a one-line message with exit code 1.
import { Command, CommanderError } from 'commander';
import { versionLine } from '../common/build-info.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { createCliContext, type CliContext } from './cli-context.js';
import { registerClientCommands } from './commands/client-commands.js';
import { registerDataCommands } from './commands/data-commands.js';
import { registerServerCommands } from './commands/server-commands.js';
import { registerServiceAppCommands } from './commands/service-app-commands.js';
import { registerServiceCommands } from './commands/service-commands.js';
import { registerNetnsConnectorCommand } from './commands/netns-connector-command.js';
import { registerExecCommand } from './commands/exec-command.js';
import { EXIT_BAD_CONFIG, EXIT_FAILURE } from './exit-codes.js';
import { terminalSafe } from './terminal-text.js';

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
  const getCtx = () => (ctx ??= createCliContext(program.opts().config as string | undefined));
  registerServerCommands(program, getCtx, (c) => (exitCode = c));
  registerClientCommands(program, getCtx, (c) => (exitCode = c));
  registerServiceAppCommands(registerServiceCommands(program, (c) => (exitCode = c)), getCtx);
  registerDataCommands(program, getCtx);
  registerNetnsConnectorCommand(program);
  registerExecCommand(program, getCtx, (c) => (exitCode = c));
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT_BAD_CONFIG;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`hivemind: ${terminalSafe(err.message, { multiline: true })}\n`);
      return EXIT_BAD_CONFIG;
    }
    const grpc = typeof (err as { code?: unknown }).code === 'number';
    // Errors may quote the master's (or a node's) words: escaped like everything else printed.
    process.stderr.write(`hivemind: ${terminalSafe(grpc ? describeGrpcError(err) : errorMessage(err), { multiline: true })}\n`);
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

main(process.argv).then(exitWhenFlushed, (err: unknown) => {
  process.stderr.write(`hivemind: ${terminalSafe(errorMessage(err), { multiline: true })}\n`);
  exitWhenFlushed(EXIT_FAILURE);
});
