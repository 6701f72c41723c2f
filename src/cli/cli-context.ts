// What every CLI command needs: the config file (if any), the environment, stdout/stderr and
// a logger, created once in main.ts so that commands stay testable.
import { readConfigFile, type ConfigFile } from '../config/config-file.js';
import type { Logger } from '../common/logger.js';
import type { LoggerFactory } from './cli-logger.js';
import { terminalSafeJson } from './terminal-text.js';

export interface CliContext {
  env: NodeJS.ProcessEnv;
  file?: ConfigFile;
  filePath?: string;
  /** The config file's text, for errors that point at a line. */
  fileText?: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** The structured logger: to stderr, or to `file` (appended, rotated) when given. */
  logger(level?: string, file?: string): Logger;
}

/**
 * `makeLogger` is given (by main.ts) only to commands whose COMMAND_MODULES entry says `logs`:
 * the logger's modules are not loaded for the others.
 */
export function createCliContext(configPath: string | undefined, env: NodeJS.ProcessEnv = process.env, makeLogger?: LoggerFactory): CliContext {
  const path = configPath ?? env.HIVEMIND_CONFIG;
  const loaded = path ? readConfigFile(path) : undefined;
  return {
    env,
    file: loaded?.values,
    filePath: path,
    fileText: loaded?.text,
    stdout: process.stdout,
    stderr: process.stderr,
    logger:
      makeLogger ??
      (() => {
        throw new Error('internal: this command logs but its COMMAND_MODULES entry (src/cli/command-table.ts) lacks `logs: true`');
      }),
  };
}

/** Pretty JSON whose strings cannot carry terminal controls (still the same JSON value). */
export function printJson(ctx: CliContext, value: unknown): void {
  ctx.stdout.write(terminalSafeJson(value) + '\n');
}
