// A log file the worker writes itself, for services whose manager keeps no output (the Windows
// startup task): JSON lines appended to the file, which is rotated to `<file>.1` (one old file
// kept) when it outgrows its cap, at start and while running. Systemd and containers keep
// logging to stderr (the journal, `docker logs`).
import { mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';
import { ConfigError, errorMessage } from './errors.js';

export interface LogFileOptions {
  /** Size at which the file is rotated. Default 16 MiB (so at most about 32 MiB on disk). */
  maxBytes?: number;
  /** How often the size is checked while running. Default 60 s. */
  checkEveryMs?: number;
}

export interface LogFile {
  /** Where the logger writes. */
  stream: NodeJS.WritableStream;
  /** Rotates now if the file is over its cap; returns whether it did. Called by the timer. */
  rotateIfFull(): boolean;
  /** Stops the size checks and closes the file. */
  close(): void;
}

const DEFAULT_MAX_BYTES = 16 * 1024 ** 2;

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function openLogFile(path: string, opts: LogFileOptions = {}): LogFile {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const unusable = (err: unknown) => new ConfigError(`log file ${path} is not usable (${errorMessage(err)}): choose a writable path with --log-file (or HIVEMIND_LOG_FILE)`);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    if (sizeOf(path) > maxBytes) renameSync(path, `${path}.1`);
  } catch (err) {
    throw unusable(err);
  }
  let dest: ReturnType<typeof pino.destination>;
  try {
    dest = pino.destination({ dest: path, append: true, sync: true, mode: 0o640 });
  } catch (err) {
    throw unusable(err);
  }
  const rotateIfFull = (): boolean => {
    if (sizeOf(path) <= maxBytes) return false;
    try {
      renameSync(path, `${path}.1`);
      dest.reopen();
      return true;
    } catch {
      return false; // keep writing where we are; the next check tries again
    }
  };
  const timer = setInterval(rotateIfFull, opts.checkEveryMs ?? 60_000);
  timer.unref();
  return {
    stream: dest as unknown as NodeJS.WritableStream,
    rotateIfFull,
    close: () => {
      clearInterval(timer);
      dest.end();
    },
  };
}
