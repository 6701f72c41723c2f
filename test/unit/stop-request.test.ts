// `hivemind worker stop` asks through a request file in the data dir (Windows has no SIGTERM):
// the worker takes each request (removes the file) and treats it like a SIGTERM, the first
// draining and the next cancelling; a worker too old to look for requests gets a SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requestStop, STOP_REQUEST_FILE, watchStopRequests } from '../../src/cli/stop-request.js';
import { PID_FILE, stopWorker } from '../../src/cli/pid-file.js';

const SRC_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli');

function dataDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hm-stopreq-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('each request is taken once (the file goes) and reported; none before one is made', async (t) => {
  const dir = dataDir(t);
  let seen = 0;
  const unwatch = watchStopRequests(dir, () => seen++, 20);
  t.after(unwatch);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(seen, 0);
  requestStop(dir);
  await until('the first request', () => seen === 1);
  assert.equal(existsSync(join(dir, STOP_REQUEST_FILE)), false, 'taken: the file is gone');
  requestStop(dir);
  await until('the second request', () => seen === 2);
});

/**
 * A stand-in worker process: claims the data dir's pid file and runs the real shutdown handlers
 * with a drain that waits until it is forced (or `drainMs` passes), printing what happened.
 */
function standIn(dir: string, opts: { watchRequests: boolean; drainMs: number }): ChildProcess & { out: string } {
  const script = `
    import { writeFileSync } from 'node:fs';
    import { join } from 'node:path';
    import { installShutdownHandlers } from ${JSON.stringify(join(SRC_CLI, 'shutdown-signals.js'))};
    writeFileSync(join(${JSON.stringify(dir)}, ${JSON.stringify(PID_FILE)}), process.pid + '\\n');
    let forced;
    const forcedP = new Promise((r) => (forced = r));
    const logger = { info: (o, m) => console.log('info', JSON.stringify(o), m), warn: (o, m) => console.log('warn', JSON.stringify(o), m), error: () => {} };
    installShutdownHandlers({
      shutdown: () => Promise.race([forcedP, new Promise((r) => setTimeout(r, ${opts.drainMs}))]),
      forceShutdown: () => { console.log('forced'); forced(); },
    }, logger, (code) => { console.log('exit', code); process.exit(code); }, ${opts.watchRequests ? JSON.stringify(dir) : 'undefined'});
    console.log('ready');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }) as ChildProcess & { out: string };
  child.out = '';
  child.stdout!.on('data', (d: Buffer) => (child.out += d.toString()));
  return child;
}

test('`worker stop` drains through the request; run again, it cancels at once', async (t) => {
  const dir = dataDir(t);
  const w = standIn(dir, { watchRequests: true, drainMs: 60_000 });
  t.after(() => w.kill('SIGKILL'));
  await until('the stand-in', () => w.out.includes('ready'));
  // the first stop drains (the drain here never ends by itself): it times out, the worker lives
  await assert.rejects(stopWorker(dir, 1_500), /still draining after 2 s; run `hivemind worker stop` again to cancel its tasks now/);
  assert.match(w.out, /"signal":"stop request"\} shutting down: draining/);
  assert.equal(w.exitCode, null);
  // the second one cancels, and the worker exits 0
  assert.equal(await stopWorker(dir, 10_000), w.pid);
  assert.match(w.out, /second signal: cancelling running tasks now\nforced\nexit 0\n/);
});

test('a worker that does not take requests (an older build) is sent SIGTERM instead', async (t) => {
  const dir = dataDir(t);
  const w = standIn(dir, { watchRequests: false, drainMs: 0 });
  t.after(() => w.kill('SIGKILL'));
  await until('the stand-in', () => w.out.includes('ready'));
  assert.equal(await stopWorker(dir, 10_000, 300), w.pid);
  assert.match(w.out, /"signal":"SIGTERM"\} shutting down/);
  assert.equal(existsSync(join(dir, STOP_REQUEST_FILE)), false, 'the request nobody took is withdrawn');
});
