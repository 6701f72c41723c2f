// The structured logger (pino). Components take a Logger and make child loggers that carry
// taskId / nodeId / containerId. Secrets are redacted by key name as a second line of defence.
import { pino, type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';

export type Logger = PinoLogger;

export interface LoggerOptions {
  level?: string;
  /** Human-readable lines (for a terminal) instead of JSON lines. */
  pretty?: boolean;
  /** Where to write; defaults to stderr so that stdout stays for command output. */
  destination?: NodeJS.WritableStream;
}

export const REDACTED_KEYS = ['token', 'credential', 'nodeCredential', 'adminToken', 'privateKey', 'authorization', 'secret'];

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    level: opts.level ?? 'info',
    redact: { paths: REDACTED_KEYS.flatMap((k) => [k, `*.${k}`]), censor: '[redacted]' },
    base: undefined,
  };
  const dest = opts.destination ?? process.stderr;
  if (opts.pretty) {
    // One line per entry on a terminal: the fields follow the message as compact JSON, so a busy
    // `hivemind dev` reads as a log, not as a screen of indented keys.
    return pino(options, pretty({ destination: dest as NodeJS.WritableStream & { fd?: number }, sync: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l', singleLine: true } as never));
  }
  return pino(options, dest as never);
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
