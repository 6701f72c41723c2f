// The pure parts of `hivemind run` / `submit --wait`: attaching (output streamed, state watched,
// detach), the interrupt rules, the transfer progress line and the local master pointer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachInterruptibly, attachTask, interruptAction, onInterrupts, reattachHint, type AttachClient } from '../../src/cli/task-attach.js';
import { formatTransfer, transferProgress, transferRate } from '../../src/cli/transfer-progress.js';
import { endReason } from '../../src/cli/commands/run-command.js';
import { compileClientConfig } from '../../src/config/client-config.js';
import { parseLocalMasterPointer, readLocalMaster, writeLocalMaster, removeLocalMaster } from '../../src/config/local-master.js';
import { ConfigError } from '../../src/common/errors.js';
import { LogStream, OutcomeKind, TaskState, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sink() {
  const chunks: string[] = [];
  return { chunks, stream: { write: (d: string | Uint8Array) => (chunks.push(Buffer.from(d).toString()), true) } as unknown as NodeJS.WritableStream };
}

function info(state: TaskState, outcome?: Partial<NonNullable<TaskInfo['outcome']>>): TaskInfo {
  return { taskId: 't1', state, ...(outcome ? { outcome } : {}) } as TaskInfo;
}

function chunk(stream: LogStream, text: string): LogChunk {
  return { taskId: 't1', attempt: 1, stream, data: Buffer.from(text), atMs: 0 };
}

/** A master whose task prints, then ends when `finish()` is called (or never). */
function fakeMaster(opts: { logsFail?: boolean } = {}) {
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const cancels: string[] = [];
  const client: AttachClient & { cancelTask(id: string, reason?: string): Promise<TaskInfo> } = {
    async *streamLogs(_id, _o, signal) {
      yield chunk(LogStream.LOG_STREAM_STDOUT, 'first\n');
      if (opts.logsFail) throw new Error('stream reset');
      yield chunk(LogStream.LOG_STREAM_STDERR, 'warn\n');
      await Promise.race([finished, new Promise((r) => signal?.addEventListener('abort', r))]);
      if (signal?.aborted) return;
      yield chunk(LogStream.LOG_STREAM_STDOUT, 'last\n');
    },
    async *watchTask(_id, signal) {
      yield info(TaskState.TASK_STATE_RUNNING);
      await Promise.race([finished, new Promise((r) => signal?.addEventListener('abort', r))]);
      if (signal?.aborted) return;
      yield info(cancels.length ? TaskState.TASK_STATE_CANCELLED : TaskState.TASK_STATE_SUCCEEDED);
    },
    getTask: async () => info(TaskState.TASK_STATE_RUNNING),
    cancelTask: async (id) => {
      cancels.push(id);
      setTimeout(finish, 10);
      return info(TaskState.TASK_STATE_RUNNING);
    },
  } as AttachClient & { cancelTask(id: string, reason?: string): Promise<TaskInfo> };
  return { client, finish, cancels };
}

test('attaching streams stdout and stderr apart while the task runs, and ends with its terminal state after the last output', async () => {
  const m = fakeMaster();
  const out = sink();
  const err = sink();
  const states: string[] = [];
  const attached = attachTask(m.client, 't1', { stdout: out.stream, stderr: err.stream, signal: new AbortController().signal, onState: (t) => states.push(TaskState[t.state]) });
  await sleep(20);
  assert.deepEqual(out.chunks, ['first\n'], 'output arrives before the task ends');
  assert.deepEqual(err.chunks, ['warn\n']);
  m.finish();
  const t = await attached;
  assert.equal(t?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.deepEqual(out.chunks, ['first\n', 'last\n'], 'the output after the last state change is not cut');
  assert.deepEqual(states, ['TASK_STATE_RUNNING', 'TASK_STATE_SUCCEEDED']);
});

test('detaching (the signal) returns undefined at once and leaves the task alone', async () => {
  const m = fakeMaster();
  const ac = new AbortController();
  const attached = attachTask(m.client, 't1', { stdout: sink().stream, stderr: sink().stream, signal: ac.signal });
  await sleep(10);
  ac.abort();
  assert.equal(await attached, undefined);
  assert.deepEqual(m.cancels, []);
});

test('a lost log stream is a note on stderr, not the end of the attachment', async () => {
  const m = fakeMaster({ logsFail: true });
  const err = sink();
  const attached = attachTask(m.client, 't1', { stdout: sink().stream, stderr: err.stream, signal: new AbortController().signal });
  await sleep(10);
  m.finish();
  assert.equal((await attached)?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.match(err.chunks.join(''), /lost the output of task t1 .*stream reset.*hivemind logs t1/);
});

test('interrupts: the first detaches, or cancels with --rm; a second exits at once', () => {
  assert.equal(interruptAction(1, false), 'detach');
  assert.equal(interruptAction(1, true), 'cancel');
  assert.equal(interruptAction(2, false), 'exit-now');
  assert.equal(interruptAction(2, true), 'exit-now');
  const src = new EventEmitter();
  const seen: string[] = [];
  const off = onInterrupts(src as never, true, (a, sig) => seen.push(`${sig}:${a}`));
  src.emit('SIGHUP', 'SIGHUP');
  src.emit('SIGINT', 'SIGINT');
  off();
  src.emit('SIGINT', 'SIGINT');
  assert.deepEqual(seen, ['SIGHUP:cancel', 'SIGINT:exit-now']);
  assert.equal(src.listenerCount('SIGINT'), 0);
  assert.match(reattachHint('t9'), /hivemind logs -f t9.*hivemind wait t9/);
});

test('with --rm an interrupt cancels the task and the attachment waits for the cancellation to land; a second exits with 130', async () => {
  const m = fakeMaster();
  const src = new EventEmitter();
  const exits: number[] = [];
  const err = sink();
  const attached = attachInterruptibly(m.client, 't1', { stdout: sink().stream, stderr: err.stream, removeOnExit: true, signals: src as never, exitNow: (c) => exits.push(c) });
  await sleep(10);
  src.emit('SIGINT', 'SIGINT');
  const t = await attached;
  assert.deepEqual(m.cancels, ['t1']);
  assert.equal(t?.state, TaskState.TASK_STATE_CANCELLED);
  assert.match(err.chunks.join(''), /cancelling task t1/);
  assert.equal(src.listenerCount('SIGINT'), 0, 'handlers are removed when the attachment ends');

  const m2 = fakeMaster();
  const src2 = new EventEmitter();
  const detached = attachInterruptibly(m2.client, 't1', { stdout: sink().stream, stderr: sink().stream, removeOnExit: false, signals: src2 as never, exitNow: (c) => exits.push(c) });
  await sleep(10);
  src2.emit('SIGINT', 'SIGINT');
  src2.emit('SIGINT', 'SIGINT');
  assert.equal(await detached, undefined);
  assert.deepEqual(exits, [130]);
  assert.deepEqual(m2.cancels, [], 'without --rm the task goes on');
});

test('run: a one-line reason for an end that is not the task\'s own non-zero exit', () => {
  assert.equal(endReason(info(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 3 })), undefined);
  assert.match(endReason(info(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_TIMED_OUT, exitCode: 0, durationMs: 2000 }))!, /^task t1 failed: timed_out, 2\.0s/);
  assert.match(endReason(info(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_OOM_KILLED, exitCode: 137 }))!, /oom_killed/);
});

test('transfer progress: bytes of total, rate and time left on a terminal; nothing in a pipe; a resumed part is not in the rate', () => {
  assert.equal(transferRate(1000, 0), 0);
  assert.equal(transferRate(2048, 2000), 1024);
  assert.equal(formatTransfer('up', 512, 1024, 1000), 'up  [##########..........]  50%  512 B / 1.0 KiB  512 B/s  1.0s left');
  assert.equal(formatTransfer('up', 2048, undefined, 1000), 'up  2.0 KiB  2.0 KiB/s');
  assert.equal(formatTransfer('get', 1024, 1024, 1000, 1024), 'get  [####################] 100%  1.0 KiB / 1.0 KiB');

  let t = 0;
  const drawn: string[] = [];
  const tty = { isTTY: true, columns: 200, write: (s: string) => (drawn.push(s), true) };
  const p = transferProgress(tty, 'get', undefined, () => t);
  p.update(1024, 4096); // resumed: 1 KiB were there
  t = 1000;
  p.update(2048);
  p.done();
  assert.match(drawn[1]!, /get  \[#####.*50%  2\.0 KiB \/ 4\.0 KiB  1\.0 KiB\/s  2\.0s left/);
  assert.equal(drawn.at(-1), '\r\x1b[2K', 'the line is cleared at the end');

  const piped: string[] = [];
  const q = transferProgress({ isTTY: false, write: (s: string) => (piped.push(s), true) }, 'get', 10);
  q.update(5);
  q.update(10);
  q.done();
  assert.deepEqual(piped, []);
});

test('local master pointer: a torn or foreign file is no pointer', () => {
  assert.equal(parseLocalMasterPointer('{"master":"127.0.0.1:1"'), undefined);
  assert.equal(parseLocalMasterPointer('{"master":"127.0.0.1:1","adminTokenFile":"/x","pid":0}'), undefined);
  assert.deepEqual(parseLocalMasterPointer('{"master":"a:1","adminTokenFile":"/x","pid":5}'), { master: 'a:1', adminTokenFile: '/x', pid: 5 });
});

test('client config: flags > env > file > the running local master > the dev master', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-home-'));
  try {
    const env = { HIVEMIND_HOME: home };
    mkdirSync(join(home, 'dev'), { recursive: true });
    writeFileSync(join(home, 'dev', 'client.json'), JSON.stringify({ master: '127.0.0.1:7071', adminToken: 'dev' }));
    const tokenFile = join(home, 'admin.token');
    writeFileSync(tokenFile, 'local\n', { mode: 0o600 });
    await writeLocalMaster({ master: '127.0.0.1:7070', adminTokenFile: tokenFile, pid: 4242 }, env);
    const alive = (pid: number) => pid === 4242;
    const hosts = { local: (e: NodeJS.ProcessEnv | undefined) => readLocalMaster(e, alive), dev: () => ({ master: '127.0.0.1:7071', adminToken: 'dev' }) };
    assert.deepEqual(compileClientConfig({ env, flags: {} }, hosts), { masters: ['127.0.0.1:7070'], adminToken: 'local' });
    assert.deepEqual(compileClientConfig({ env: { ...env, HIVEMIND_MASTER: 'h:1', HIVEMIND_ADMIN_TOKEN: 'e' }, flags: {} }, hosts), { masters: ['h:1'], adminToken: 'e' });
    assert.deepEqual(compileClientConfig({ file: { client: { master: 'f:1', adminToken: 'f' } }, env, flags: {} }, hosts), { masters: ['f:1'], adminToken: 'f' });
    assert.deepEqual(compileClientConfig({ env, flags: { master: 'x:2', adminToken: 'y' } }, hosts).masters, ['x:2']);
    // a master killed with -9 left its pointer: the dev master is found, as if there were none
    assert.deepEqual(compileClientConfig({ env, flags: {} }, { ...hosts, local: (e) => readLocalMaster(e, () => false) }), { masters: ['127.0.0.1:7071'], adminToken: 'dev' });
    // a token file this user cannot read is said so, not "no master"
    if (process.getuid?.() !== 0) {
      chmodSync(tokenFile, 0o000);
      assert.throws(() => readLocalMaster(env, alive), (e: unknown) => e instanceof ConfigError && /cannot read .*--admin-token/.test(e.message));
      chmodSync(tokenFile, 0o600);
      chmodSync(join(home, 'local-master.json'), 0o000);
      assert.throws(() => compileClientConfig({ env, flags: {} }, hosts), (e: unknown) => e instanceof ConfigError && /local-master\.json, which this user cannot read.*sudo/.test(e.message));
      chmodSync(join(home, 'local-master.json'), 0o600);
    }
    await removeLocalMaster(1, env);
    assert.ok(readLocalMaster(env, alive), "another master's pid does not remove the pointer");
    await removeLocalMaster(4242, env);
    assert.equal(readLocalMaster(env, alive), undefined);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
