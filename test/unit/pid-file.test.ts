// The worker's pid file: one live worker per data dir, and `hivemind worker stop` waits for exactly
// that process. A worker that exited but was never reaped (a zombie, e.g. under a container's
// non-reaping PID 1) is gone: it must neither block a new worker nor keep `stop` waiting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PID_FILE, readPid, stopWorker, writePidFile } from '../../src/cli/pid-file.js';
import { ConfigError } from '../../src/common/errors.js';

function dataDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hm-pid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A process that stays a zombie for a few seconds: its parent execs into a sleep that never reaps it. */
async function zombiePid(t: { after(fn: () => void): void }): Promise<number> {
  const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 20));
    try {
      if (readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')) return pid;
    } catch {
      break;
    }
  }
  throw new Error(`process ${pid} did not become a zombie`);
}

test('a live worker holds its data dir; its pid file goes when it releases it', (t) => {
  const dir = dataDir(t);
  const release = writePidFile(dir);
  assert.equal(readPid(dir), process.pid);
  release();
  assert.equal(readPid(dir), undefined);
  const sleeper = spawn('sleep', ['5']);
  t.after(() => sleeper.kill('SIGKILL'));
  writeFileSync(join(dir, PID_FILE), `${sleeper.pid}\n`);
  assert.throws(() => writePidFile(dir), (e: unknown) => e instanceof ConfigError && /another worker \(pid \d+\) is running/.test(e.message));
});

test('a zombie worker neither holds the data dir nor keeps `worker stop` waiting', { skip: process.platform !== 'linux' && 'needs /proc' }, async (t) => {
  const dir = dataDir(t);
  const pid = await zombiePid(t);
  writeFileSync(join(dir, PID_FILE), `${pid}\n`);
  const started = Date.now();
  await assert.rejects(stopWorker(dir, 10_000), /no worker is running with the data dir/);
  assert.ok(Date.now() - started < 2_000, 'answered at once, not after the stop timeout');
  const release = writePidFile(dir);
  assert.equal(readPid(dir), process.pid, 'a new worker claims the data dir');
  release();
});
