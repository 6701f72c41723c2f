// The running worker's pid in its data dir, so that `hivemind worker stop` can ask exactly that
// process to drain and stop, and wait until it has removed its tunnel and exited.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../common/errors.js';
import { sleep } from '../common/sleep.js';
import { requestStop, stopRequestAcknowledged, withdrawStopRequest } from './stop-request.js';

export const PID_FILE = 'worker.pid';

/** A process that exited but was not reaped yet (a zombie) counts as gone: it will never drain. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !zombie(pid);
}

/** Linux: the state in /proc/PID/stat, after the command name in parentheses, is Z for a zombie. */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false; // no /proc (Windows, macOS): kill(pid, 0) decides
  }
}

/** Claims the data dir for this process; refuses when another live worker holds it. */
export function writePidFile(dataDir: string): () => void {
  const file = join(dataDir, PID_FILE);
  const other = readPid(dataDir);
  if (other !== undefined && other !== process.pid && alive(other)) {
    throw new ConfigError(`another worker (pid ${other}) is running with the data dir ${dataDir}; stop it first (hivemind worker stop --data-dir ${dataDir})`);
  }
  writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
  return () => {
    if (readPid(dataDir) === process.pid) rmSync(file, { force: true });
  };
}

export function readPid(dataDir: string): number | undefined {
  try {
    const n = Number(readFileSync(join(dataDir, PID_FILE), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Asks the worker of `dataDir` to drain and stop (stop-request.ts: the same on every platform),
 * then waits for it to exit. A worker that does not take the request within `ackMs` predates
 * requests: it gets a SIGTERM instead. Returns its pid.
 */
export async function stopWorker(dataDir: string, timeoutMs: number, ackMs = 5_000): Promise<number> {
  const pid = readPid(dataDir);
  if (pid === undefined || !alive(pid)) throw new Error(`no worker is running with the data dir ${dataDir}`);
  requestStop(dataDir);
  const ackBy = Date.now() + ackMs;
  while (!stopRequestAcknowledged(dataDir) && alive(pid) && Date.now() < ackBy) await sleep(100);
  if (!stopRequestAcknowledged(dataDir)) {
    withdrawStopRequest(dataDir);
    if (alive(pid)) process.kill(pid, 'SIGTERM');
  }
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) throw new Error(`worker ${pid} is still draining after ${Math.round(timeoutMs / 1000)} s; run \`hivemind worker stop\` again to cancel its tasks now`);
    await sleep(100);
  }
  return pid;
}
