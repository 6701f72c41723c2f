// The fixture of the tests with two real masters on one PostgreSQL store (an active one and a
// standby): a fresh schema, a home directory, the processes to kill at the end, the CLI's
// environment and two free addresses. Under CI a missing Docker or PostgreSQL fails the test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, type CliDaemon } from './cli-process.js';
import { requireDocker, requirePostgres } from './requirements.js';
import { freshPgSchema, testPgUrl } from './test-store.js';

export interface TwoMasters {
  store: string;
  home: string;
  /** Stopped with SIGKILL, last started first, when the test ends. */
  procs: CliDaemon[];
  env: NodeJS.ProcessEnv;
  a: string;
  b: string;
}

/** Undefined when a requirement is missing (the test was skipped, or failed under CI). */
export async function twoMasters(t: TestContext, prefix: string): Promise<TwoMasters | undefined> {
  if (!requireDocker(t)) return undefined;
  const pg = testPgUrl();
  if (!requirePostgres(t, pg)) return undefined;
  const store = freshPgSchema().url;
  const home = mkdtempSync(join(tmpdir(), prefix));
  const procs: CliDaemon[] = [];
  t.after(async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  });
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_LOG_LEVEL: 'info', HIVEMIND_MONITOR_PORT: '0' };
  const [a, b] = [`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`];
  return { store, home, procs, env, a, b };
}
