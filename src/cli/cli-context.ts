// What every CLI command needs: the config file (if any), the environment, stdout/stderr and
// a logger, created once in main.ts so that commands stay testable.
import { readConfigFile, type ConfigFile } from '../config/config-file.js';
import { createLogger, type Logger } from '../common/logger.js';
import { openLogFile } from '../common/log-file.js';
import { stringifyProto } from '../protocol/proto-json.js';

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

export function createCliContext(configPath: string | undefined, env: NodeJS.ProcessEnv = process.env): CliContext {
  const path = configPath ?? env.HIVEMIND_CONFIG;
  const loaded = path ? readConfigFile(path) : undefined;
  return {
    env,
    file: loaded?.values,
    filePath: path,
    fileText: loaded?.text,
    stdout: process.stdout,
    stderr: process.stderr,
    logger: (level = 'info', file?: string) =>
      file ? createLogger({ level, destination: openLogFile(file).stream }) : createLogger({ level, pretty: Boolean(process.stderr.isTTY) || env.HIVEMIND_LOG_PRETTY === '1' }),
  };
}

export function printJson(ctx: CliContext, value: unknown): void {
  ctx.stdout.write(stringifyProto(value, 2) + '\n');
}
