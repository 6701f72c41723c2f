// `hivemind worker stop` asks the worker to drain through a file in its data dir, which works the
// same on every platform: Windows has no SIGTERM (a scheduled task's /End kills at once), so a
// signal cannot ask a Windows worker to drain. Only who may write the data dir (0700; SYSTEM and
// Administrators on Windows) can ask. The worker polls for the file, removes it (the
// acknowledgement) and treats it like a SIGTERM: the first request drains, the next cancels now.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const STOP_REQUEST_FILE = 'stop.request';

/** Asks the worker of `dataDir` to stop; see stopRequestAcknowledged(). */
export function requestStop(dataDir: string): void {
  writeFileSync(join(dataDir, STOP_REQUEST_FILE), `${new Date().toISOString()}\n`, { mode: 0o600 });
}

/** True once the worker has taken the request (removed the file). */
export function stopRequestAcknowledged(dataDir: string): boolean {
  return !existsSync(join(dataDir, STOP_REQUEST_FILE));
}

/** Withdraws a request nobody took (a worker too old to look for it), or one left from an earlier worker. */
export function withdrawStopRequest(dataDir: string): void {
  rmSync(join(dataDir, STOP_REQUEST_FILE), { force: true });
}

/**
 * Calls `onRequest` for each stop request that appears in `dataDir`, checking every `everyMs`.
 * (A worker withdraws any request left from before it claimed the data dir.) Returns the unwatch.
 */
export function watchStopRequests(dataDir: string, onRequest: () => void, everyMs = 500): () => void {
  const file = join(dataDir, STOP_REQUEST_FILE);
  const timer = setInterval(() => {
    if (!existsSync(file)) return;
    rmSync(file, { force: true });
    onRequest();
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
