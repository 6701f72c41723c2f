// The pointer `hivemind master start` leaves in $HIVEMIND_HOME (mode 0600) so that the admin CLI on
// the master host finds it without flags, as it finds the `hivemind dev` master: the address it
// listens on (always loopback: the master refuses any other), the admin token file (not the token: that file keeps its own 0600), and the master's pid,
// so that a pointer left by a master killed with -9 is ignored instead of shadowing a dev master.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../common/errors.js';
import { localMasterFile } from './paths.js';

export interface LocalMasterPointer {
  master: string;
  adminTokenFile: string;
  pid: number;
}

/** A pointer's JSON, or undefined for a torn or foreign file. */
export function parseLocalMasterPointer(text: string): LocalMasterPointer | undefined {
  try {
    const v = JSON.parse(text) as Partial<LocalMasterPointer>;
    if (typeof v.master === 'string' && typeof v.adminTokenFile === 'string' && Number.isSafeInteger(v.pid) && (v.pid as number) > 0) {
      return { master: v.master, adminTokenFile: v.adminTokenFile, pid: v.pid as number };
    }
  } catch {
    // as if there were none
  }
  return undefined;
}

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The running local master's address and admin token, or undefined when there is no pointer or its
 * master is gone. A token file this user cannot read is an error that says so (the master runs as
 * root; the admin commands must too, or take --admin-token).
 */
export function readLocalMaster(env: NodeJS.ProcessEnv = process.env, alive: (pid: number) => boolean = processAlive): { master: string; adminToken: string } | undefined {
  const path = localMasterFile(env);
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    // A master started with sudo and this user's HOME: its pointer is root's, and so is the master.
    throw new ConfigError(
      `a local master left its address in ${path}, which this user cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)}): ` +
        'run the command as the master\'s user (e.g. with sudo), or pass --master and --admin-token',
    );
  }
  const p = parseLocalMasterPointer(text);
  if (!p || !alive(p.pid)) return undefined;
  try {
    const adminToken = readFileSync(p.adminTokenFile, 'utf8').trim();
    return adminToken ? { master: p.master, adminToken } : undefined;
  } catch (err) {
    throw new ConfigError(
      `the local master (${p.master}, pid ${p.pid}) keeps its admin token in ${p.adminTokenFile}, which this user cannot read ` +
        `(${(err as NodeJS.ErrnoException).code ?? String(err)}): run the command as the master's user, or pass --admin-token`,
    );
  }
}

/** Writes the pointer (0600, in a 0700 home); returns its path. */
export async function writeLocalMaster(p: LocalMasterPointer, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const path = localMasterFile(env);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
  await chmod(path, 0o600);
  return path;
}

/** Removes the pointer if it is still this master's (a newer master may have replaced it). */
export async function removeLocalMaster(pid: number, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const path = localMasterFile(env);
  const p = parseLocalMasterPointer(await readFile(path, 'utf8').catch(() => ''));
  if (p?.pid === pid) await rm(path, { force: true });
}
