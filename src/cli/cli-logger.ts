// The structured logger of the CLI's long-running commands (dev, master start, worker start):
// readable lines on a terminal, JSON lines in a pipe or a file. Its own module because pino and
// pino-pretty are not loaded by commands that do not log (see command-table.ts `logs`).
import { createLogger, type Logger } from '../common/logger.js';
import { openLogFile } from '../common/log-file.js';

export type LoggerFactory = (level?: string, file?: string) => Logger;

/**
 * To `file` (appended, rotated; always JSON lines, for tools) when given, else to stderr: pretty
 * when stderr is a terminal or HIVEMIND_LOG_PRETTY=1.
 */
export function cliLoggerFactory(env: NodeJS.ProcessEnv, stderrIsTty = Boolean(process.stderr.isTTY)): LoggerFactory {
  return (level = 'info', file?: string) =>
    file ? createLogger({ level, destination: openLogFile(file).stream }) : createLogger({ level, pretty: stderrIsTty || env.HIVEMIND_LOG_PRETTY === '1' });
}
