// Where HiveMind keeps its state by default: $HIVEMIND_HOME, else ~/.hivemind.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** A worker's task inputs and results in transit, under its data dir. */
export function workerSpoolDir(dataDir: string): string {
  return join(resolve(dataDir), 'spool');
}

export function hivemindHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.HIVEMIND_HOME || join(homedir(), '.hivemind'));
}

/** The embedded `hivemind dev` environment: master and worker data side by side. */
export function devDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(hivemindHome(env), 'dev');
}

/** Written by `hivemind dev` so that the admin CLI finds the dev master without flags. */
export function devClientFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(devDir(env), 'client.json');
}

/** Written by `hivemind master start`: where the admin CLI on the master host finds it (see local-master.ts). */
export function localMasterFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(hivemindHome(env), 'local-master.json');
}
