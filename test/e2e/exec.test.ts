// `hivemind exec` end to end: a real master, real workers and Docker. Pipes carry stdin and keep
// stdout and stderr apart with the command's exit code; a --no-exec node refuses with the reason;
// sessions land in the task's events; and, as a person would use it, a tmux pane runs `exec -it`
// with busybox top (redrawn after a resize, quit with q) and a shell (its size, Ctrl-C, exit 3).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminClient } from '../../src/client/admin-client.js';
import { TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { CLI, runProcess, waitFor } from '../helpers/cli-process.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { requireDockerImage, requireTmux } from '../helpers/requirements.js';

const IMAGE = 'hivemind/busybox:1';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Tasks this test started: cancelled at the end, so a stopped worker leaves no container behind. */
const started: string[] = [];

async function runningTask(cluster: ProcessCluster, admin: AdminClient): Promise<string> {
  const r = await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '600']);
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  started.push(id);
  await waitFor(`task ${id} running`, async () => (await admin.getTask(id)).state === TaskState.TASK_STATE_RUNNING || undefined, 60_000, 200);
  return id;
}

/** A private tmux server (its own socket): only what this test starts, killed at the end. */
function tmux(t: TestContext) {
  const socket = join(tmpdir(), `hm-exec-tmux-${process.pid}`);
  const run = (...args: string[]) => execFileSync('tmux', ['-S', socket, ...args], { encoding: 'utf8' });
  t.after(() => {
    try {
      run('kill-server');
    } catch {
      // already gone
    }
    rmSync(socket, { force: true });
  });
  const capture = (session: string) => run('capture-pane', '-p', '-t', session).replace(/\n+$/, '').split('\n');
  const until = (session: string, what: string, ok: (lines: string[]) => boolean, timeoutMs = 15_000) =>
    waitFor(what, () => {
      const lines = capture(session);
      return ok(lines) ? lines : undefined;
    }, timeoutMs, 100).catch((err: Error) => {
      throw new Error(`${err.message}\npane:\n${capture(session).join('\n')}`);
    });
  return { run, capture, until };
}

test('hivemind exec through a real master, worker and Docker', { timeout: 300_000 }, async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // The first worker refuses exec; a second one, started after it stops, takes sessions.
  const cluster = await ProcessCluster.start({ reportInterval: '1s', workerArgs: ['--no-exec'] });
  const admin = AdminClient.connect(cluster.address, cluster.adminToken);
  t.after(async () => {
    for (const id of started) {
      await admin.cancelTask(id).catch(() => undefined);
      await waitFor(`task ${id} ended`, async () => [TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_SUCCEEDED].includes((await admin.getTask(id)).state) || undefined, 30_000, 200).catch(() => undefined);
    }
    admin.close();
    await cluster.close();
  });
  const execArgs = (args: string[]) => [process.execPath, CLI, 'exec', ...args].map(quote).join(' ');
  const shell = (line: string) => runProcess('sh', ['-c', line], { env: cluster.env, timeoutMs: 60_000, what: line });

  await t.test('a node run with --no-exec refuses, saying so', async () => {
    const id = await runningTask(cluster, admin);
    const r = await cluster.cli(['exec', id, '--', 'true']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /does not allow exec: its operator runs it with --no-exec/);
    await admin.cancelTask(id);
    await waitFor(`task ${id} cancelled`, async () => (await admin.getTask(id)).state === TaskState.TASK_STATE_CANCELLED || undefined, 30_000, 200);
    await cluster.worker!.stop('SIGTERM');
  });

  await cluster.addWorker();
  const id = await runningTask(cluster, admin);

  await t.test('pipes: stdin reaches the command, stdout and stderr stay apart, the exit code is the command\'s', async () => {
    const piped = await shell(`echo hi | ${execArgs([id, '-i', '--', 'cat'])}`);
    assert.deepEqual({ code: piped.code, stdout: piped.stdout }, { code: 0, stdout: 'hi\n' }, piped.stderr);
    const big = await shell(`head -c 1000000 /dev/zero | ${execArgs([id, '-i', '--', 'wc', '-c'])}`);
    assert.equal(big.stdout.trim(), '1000000', big.stderr);
    const split = await cluster.cli(['exec', id, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual(split, { code: 7, stdout: 'out\n', stderr: 'err\n' });
    const noTty = await cluster.cli(['exec', id, '-t', '--', 'sh']);
    assert.equal(noTty.code, 2);
    assert.match(noTty.stderr, /-t asks for a terminal, but stdin is not a terminal/);
    const missing = await cluster.cli(['exec', id, '--', 'no-such-program']);
    assert.equal(missing.code, 126, `${missing.stdout}\n${missing.stderr}`);
  });

  await t.test('each session is in the task\'s events', async () => {
    const events = (await admin.getTask(id)).events.map((e) => e.message);
    assert.ok(events.includes('exec started: cat'), events.join('\n'));
    assert.ok(events.some((m) => /^exec ended: exit 7 after \d+\.\d s$/.test(m)), events.join('\n'));
    const shown = await cluster.cli(['get', id]);
    assert.match(shown.stdout, /exec started: sh -c "echo out; echo err >&2; exit 7"/);
  });

  await t.test('in a terminal (tmux): top draws, redraws after a resize and quits with q; a shell sees its size, Ctrl-C and exit', async (tt) => {
    if (!requireTmux(tt)) return;
    const tm = tmux(tt);
    const env = `env HIVEMIND_MASTER=${quote(cluster.address)} HIVEMIND_ADMIN_TOKEN=${quote(cluster.adminToken)} HOME=${quote(cluster.home)}`;
    const inPane = (args: string[]) => `${env} ${execArgs(args)}; echo "exec exited with $?"; sleep 600`;

    tm.run('new-session', '-d', '-x', '100', '-y', '30', '-s', 'top', inPane(['-it', id, '--', 'top', '-d', '1']));
    const wide = await tm.until('top', 'top\'s screen', (l) => l.some((x) => x.startsWith('Mem:')) && l.some((x) => /PID\s+PPID\s+USER/.test(x)) && l.some((x) => /sleep 600/.test(x)));
    const memWide = wide.find((x) => x.startsWith('Mem:'))!;
    assert.ok(memWide.length > 60, `at 100 columns top's Mem line is whole: ${memWide}`);
    tm.run('resize-window', '-t', 'top', '-x', '60', '-y', '20');
    // Redrawn by top at the new size: its first line back at the top of the 20-row pane, every
    // line cut at 60 columns by top itself (tmux alone would have pushed the top rows away).
    const narrow = await tm.until('top', 'top redrawn at 60x20', (l) => l.length <= 20 && l[0]!.startsWith('Mem:') && l.every((x) => x.length <= 60) && l.some((x) => /PID\s+PPID/.test(x)));
    assert.ok(narrow.length <= 20);
    tm.run('send-keys', '-t', 'top', 'q');
    await tm.until('top', 'exec ended after q', (l) => l.some((x) => x === 'exec exited with 0'));

    tm.run('new-session', '-d', '-x', '100', '-y', '30', '-s', 'sh', inPane(['-it', id, '--', 'sh']));
    // As a person would: wait for the prompt before typing. A size is asked again until it shows:
    // Docker 20.10 applies the initial size only with the resize right after the start (docs/exec.md).
    const prompt = (l: string[]) => l.some((x) => /\$\s*$/.test(x));
    await tm.until('sh', 'the shell\'s prompt', prompt);
    const sizeShows = async (size: string) => {
      for (let i = 0; ; i++) {
        tm.run('send-keys', '-t', 'sh', 'clear; stty size', 'Enter');
        try {
          return await tm.until('sh', `the shell's size ${size}`, (l) => l.some((x) => x.trim() === size), 3_000);
        } catch (err) {
          if (i >= 4) throw err;
        }
      }
    };
    await sizeShows('30 100');
    tm.run('resize-window', '-t', 'sh', '-x', '60', '-y', '20');
    await sizeShows('20 60');
    // Ctrl-C once the remote sleep runs: it reaches the sleep, not the client, and the shell lives.
    tm.run('send-keys', '-t', 'sh', 'clear; echo sleep-$((1+1)); sleep 300', 'Enter');
    await tm.until('sh', 'the remote sleep started', (l) => l.some((x) => x.trim() === 'sleep-2'));
    await new Promise((r) => setTimeout(r, 1000));
    tm.run('send-keys', '-t', 'sh', 'C-c');
    tm.run('send-keys', '-t', 'sh', 'echo still-$((40+2))', 'Enter');
    await tm.until('sh', 'Ctrl-C reached the remote sleep, not the client', (l) => l.some((x) => x.trim() === 'still-42'));
    tm.run('send-keys', '-t', 'sh', 'exit 3', 'Enter');
    await tm.until('sh', 'the pane\'s exec ends with the shell\'s exit code', (l) => l.some((x) => x === 'exec exited with 3'));
  });

  await t.test('the task still runs after the sessions', async () => {
    assert.equal((await admin.getTask(id)).state, TaskState.TASK_STATE_RUNNING);
  });
});
