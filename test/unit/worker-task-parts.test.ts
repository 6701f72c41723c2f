// The parts a task attempt goes through, each on its own with small fakes: RunningTask (one
// attempt from its input to its terminal update), TaskTransfers (input download, result upload)
// and Recovery (what an earlier process of this worker left unfinished).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ManualClock } from '../../src/common/clock.js';
import { AbortedError, ResultTooLargeError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { NotConnectedError, toServiceError } from '../../src/protocol/grpc-errors.js';
import { OutcomeKind, TaskState, type LogChunk, type TaskOutcome } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment } from '../../src/protocol/gen/hivemind/v1/node.js';
import type { ExecutionResult, TaskExecution, TaskProgressEvent, TaskRecord } from '../../src/worker/contracts.js';
import { LogForwarder } from '../../src/worker/log-forwarder.js';
import { InputChecksumError, type LogSink, type MasterConnection } from '../../src/worker/master-connection.js';
import type { Session } from '../../src/worker/master-session.js';
import type { UpdateExtra } from '../../src/worker/outbox.js';
import { Recovery, type RecoveryDeps } from '../../src/worker/recovery.js';
import { RunningTask, spoolName, type TaskRunDeps } from '../../src/worker/running-task.js';
import { TaskTransfers, type TaskTransfersDeps } from '../../src/worker/task-transfers.js';
import type { Reservation } from '../../src/worker/fit.js';

const MiB = 1024 ** 2;

function grpcError(code: status, details = status[code]): Error {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hm-task-parts-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function assignment(taskId: string, over: Partial<TaskAssignment> = {}): TaskAssignment {
  return {
    taskId,
    attempt: 1,
    spec: { image: 'busybox', command: ['true'], env: {}, limits: { cpus: 1, memoryBytes: 64 * MiB, gpus: 0, pids: 0, timeoutMs: 0 }, maxOutputBytes: 0 },
    inputSize: 0,
    inputSha256: '',
    ...over,
  } as unknown as TaskAssignment;
}

interface Update {
  state: TaskState;
  extra?: UpdateExtra;
}

// ------------------------------------------------------------------ running task

/** What the fake executor does with an execution; it gets the signal and the callbacks. */
type Execute = (exec: TaskExecution) => Promise<ExecutionResult>;

const exited = (exitCode = 0): ExecutionResult['outcome'] => ({ kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode, message: '', durationMs: 5 });

async function runningTask(t: TestContext, execute: Execute, over: {
  assignment?: TaskAssignment;
  probe?: 'started' | 'not-started';
  storedLogsSentUntilNs?: bigint;
  downloadInput?: (task: RunningTask, file: string) => Promise<void>;
  uploadResult?: (task: RunningTask, result: { path: string; size: number; sha256: string }) => Promise<void>;
} = {}) {
  const spoolDir = await tempDir(t);
  const clock = new ManualClock();
  const updates: Update[] = [];
  const timeline: string[] = [];
  const executions: TaskExecution[] = [];
  const stored: { outcome: TaskOutcome; result: unknown; logTail: string }[] = [];
  const progress: TaskProgressEvent[] = [];
  const sent: LogChunk[] = [];
  let sinkEnded = false;
  const sink: LogSink = { write: (c) => (sent.push(c), true), ready: true, broken: false, end: async () => void (sinkEnded = true) };
  const a = over.assignment ?? assignment('t1');
  const logs = new LogForwarder({ taskId: a.taskId, attempt: a.attempt, clock, flushMs: 1, maxBufferedBytes: MiB, openSink: () => sink });
  const deps: TaskRunDeps = {
    executor: {
      probe: async () => over.probe ?? 'not-started',
      execute: async (exec) => {
        executions.push(exec);
        return execute(exec);
      },
    },
    store: {
      getTask: () => ({ logsSentUntilNs: over.storedLogsSentUntilNs }) as TaskRecord,
      setExecution: (_id, _attempt, outcome, result, logTail) => void stored.push({ outcome, result, logTail }),
    },
    clock,
    logger: silentLogger(),
    spoolDir,
    update: (_task, state, extra) => {
      updates.push({ state, extra });
      timeline.push(`update ${TaskState[state]}`);
    },
    downloadInput: over.downloadInput ?? (async (_task, file) => writeFile(file, 'input bytes')),
    uploadResult: over.uploadResult ?? (async (_task, result) => void timeline.push(`upload ${path.basename(result.path)}`)),
    onLog: () => undefined,
    onProgress: (e) => void progress.push(e),
    onLeftovers: () => void timeline.push('leftovers'),
  };
  const reservation: Reservation = { cpus: 1, memoryBytes: 64 * MiB, gpuIndexes: [1] };
  const task = new RunningTask(a, reservation, logs, deps);
  return { task, spoolDir, clock, updates, timeline, executions, stored, progress, sent, sinkEnded: () => sinkEnded };
}

const states = (updates: Update[]) => updates.map((u) => TaskState[u.state]);

test('running task: a run goes pulling, running, uploading, then succeeds; the result reaches the master before the end does', async (t) => {
  let reservedDuringRun: Reservation | undefined;
  const h = await runningTask(t, async (exec) => {
    reservedDuringRun = h.task.reservation;
    exec.onPhase('pulling');
    exec.onPhase('running');
    exec.onLog('stdout', Buffer.from('hello\n'), 7n);
    const resultPath = path.join(h.spoolDir, spoolName('t1', 1, 'result.tar.gz'));
    await writeFile(resultPath, 'archive');
    return { outcome: exited(0), result: { path: resultPath, size: 7, sha256: 'ab'.repeat(32) }, logTail: 'hello\n' };
  }, { assignment: assignment('t1', { inputSize: 11, inputSha256: 'cd'.repeat(32) }) });
  await h.task.run(false);

  assert.deepEqual(states(h.updates), ['TASK_STATE_PULLING', 'TASK_STATE_RUNNING', 'TASK_STATE_UPLOADING', 'TASK_STATE_SUCCEEDED']);
  assert.deepEqual(h.timeline.slice(-2), [`upload ${spoolName('t1', 1, 'result.tar.gz')}`, 'update TASK_STATE_SUCCEEDED']);
  assert.equal(h.updates.at(-1)!.extra?.outcome?.resultSize, 7);
  // The executor got the downloaded input and the reserved GPUs; the reservation ends with the container.
  const exec = h.executions[0]!;
  assert.equal(exec.inputFile, path.join(h.spoolDir, spoolName('t1', 1, 'input.tar.gz')));
  assert.deepEqual(exec.gpuIndexes, [1]);
  assert.equal(exec.recovery, undefined);
  assert.deepEqual(reservedDuringRun?.gpuIndexes, [1]);
  assert.equal(h.task.reservation, undefined);
  // The outcome is stored with the result; the live log reached the master; the spool is empty.
  assert.equal(h.stored[0]!.outcome.resultSha256, 'ab'.repeat(32));
  assert.deepEqual(h.sent.map((c) => c.data.toString()), ['hello\n']);
  assert.equal(h.sinkEnded(), true);
  assert.equal(existsSync(exec.inputFile!), false);
  assert.equal(existsSync(path.join(h.spoolDir, spoolName('t1', 1, 'result.tar.gz'))), false);
});

test('running task: the container removal runs behind the upload: the result and the end reach the master first; the run ends once it settled, a failed one as leftovers', async (t) => {
  let settle!: (clean: boolean) => void;
  const cleanup = new Promise<boolean>((r) => (settle = r));
  const h = await runningTask(t, async (exec) => {
    exec.onPhase('running');
    const resultPath = path.join(h.spoolDir, spoolName('t1', 1, 'result.tar.gz'));
    await writeFile(resultPath, 'archive');
    return { outcome: exited(0), result: { path: resultPath, size: 7, sha256: 'ab'.repeat(32) }, logTail: '', cleanup };
  });
  let ended = false;
  const run = h.task.run(false).then(() => void (ended = true));
  for (let i = 0; i < 1000 && !h.timeline.includes('update TASK_STATE_SUCCEEDED'); i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.timeline, [`update TASK_STATE_RUNNING`, 'update TASK_STATE_UPLOADING', `upload ${spoolName('t1', 1, 'result.tar.gz')}`, 'update TASK_STATE_SUCCEEDED'], 'uploaded and ended while the removal is still running');
  assert.equal(h.task.reservation, undefined, 'the ended container holds no resources');
  await new Promise((r) => setImmediate(r));
  assert.equal(ended, false, 'the run (a drain) waits for the removal');
  settle(false);
  await run;
  assert.equal(h.timeline.at(-1), 'leftovers', 'a removal that left something is reported for the reclaimer');
});

test('running task: abort() stops the run and the outcome says why: cancelled, superseded, shutdown', async (t) => {
  for (const [reason, kind, message] of [
    ['cancelled', OutcomeKind.OUTCOME_KIND_CANCELLED, 'cancelled'],
    ['superseded', OutcomeKind.OUTCOME_KIND_CANCELLED, 'stopped: the master moved this task to a newer attempt'],
    ['shutdown', OutcomeKind.OUTCOME_KIND_SHUTDOWN, 'the node shut down past its drain timeout'],
  ] as const) {
    // The executor gives up with an error when its signal aborts, as the Docker runner does.
    const h = await runningTask(t, (exec) => new Promise((_, reject) => {
      exec.onPhase('running');
      exec.signal.addEventListener('abort', () => reject(new AbortedError('container stopped')), { once: true });
    }));
    const run = h.task.run(false);
    await new Promise((r) => setTimeout(r, 5));
    h.task.abort(reason);
    await run;
    assert.equal(h.task.aborted, true);
    assert.deepEqual(states(h.updates), ['TASK_STATE_RUNNING', 'TASK_STATE_CANCELLED'], reason);
    assert.equal(h.updates.at(-1)!.extra?.outcome?.kind, kind, reason);
    assert.equal(h.updates.at(-1)!.extra?.message, message, reason);
  }
});

test('running task: aborted while the executor finishes, a produced result is not uploaded and the task ends CANCELLED', async (t) => {
  let uploads = 0;
  const h = await runningTask(t, async (exec) => {
    h.task.abort('shutdown');
    exec.onPhase('collecting');
    const resultPath = path.join(h.spoolDir, 'r.tar.gz');
    await writeFile(resultPath, 'archive');
    return { outcome: { ...exited(137), message: 'killed at shutdown' }, result: { path: resultPath, size: 7, sha256: 'ab'.repeat(32) }, logTail: '' };
  }, { uploadResult: async () => void uploads++ });
  await h.task.run(false);
  assert.equal(uploads, 0);
  assert.deepEqual(states(h.updates), ['TASK_STATE_CANCELLED']);
  assert.equal(h.updates[0]!.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_SHUTDOWN);
  assert.equal(h.updates[0]!.extra?.outcome?.exitCode, 137);
  assert.equal(existsSync(path.join(h.spoolDir, 'r.tar.gz')), false, 'the unsent result is removed');
});

test('running task: aborted during the input download, the task is CANCELLED and never executed', async (t) => {
  const h = await runningTask(t, async () => ({ outcome: exited(0), logTail: '' }), {
    assignment: assignment('t1', { inputSize: 10, inputSha256: 'cd'.repeat(32) }),
    downloadInput: (task) => new Promise((_, reject) => {
      task.signal.addEventListener('abort', () => reject(new AbortedError('stopped waiting for the master')), { once: true });
      setTimeout(() => task.abort('cancelled'), 2);
    }),
  });
  await h.task.run(false);
  assert.equal(h.executions.length, 0);
  assert.deepEqual(states(h.updates), ['TASK_STATE_CANCELLED']);
  assert.equal(h.updates[0]!.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_CANCELLED);
});

test('running task: a failure fails the task with the kind that names the culprit: input, output or the worker', async (t) => {
  const refusal = Object.assign(grpcError(status.INVALID_ARGUMENT, 'result of task t1: over the limit'), toServiceError(new ResultTooLargeError('result of task t1: over the limit')));
  const cases: [string, Partial<Parameters<typeof runningTask>[2]>, OutcomeKind, RegExp][] = [
    ['bad input', { downloadInput: async () => { throw new InputChecksumError('t1', 'aa', 'bb'); } }, OutcomeKind.OUTCOME_KIND_INPUT_REJECTED, /^input rejected: task t1: input archive sha256 is bb/],
    ['refused output', { uploadResult: async () => { throw refusal; } }, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, /^output rejected by the master: result of task t1: over the limit/],
    ['anything else', { uploadResult: async () => { throw new Error('disk on fire'); } }, OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR, /^worker error: disk on fire/],
  ];
  for (const [what, over, kind, message] of cases) {
    const h = await runningTask(t, async () => {
      const resultPath = path.join(h.spoolDir, 'r.tar.gz');
      await writeFile(resultPath, 'archive');
      return { outcome: exited(0), result: { path: resultPath, size: 7, sha256: 'ab'.repeat(32) }, logTail: '' };
    }, { assignment: assignment('t1', { inputSize: 10, inputSha256: 'aa' }), ...over });
    await h.task.run(false);
    const last = h.updates.at(-1)!;
    assert.equal(TaskState[last.state], 'TASK_STATE_FAILED', what);
    assert.equal(last.extra?.outcome?.kind, kind, what);
    assert.match(last.extra?.message ?? '', message, what);
  }
});

test('running task: recovered, a started container is reattached where its log left off; an unstarted attempt runs again with its input', async (t) => {
  const withInput = assignment('t1', { inputSize: 10, inputSha256: 'cd'.repeat(32) });
  const reattached = await runningTask(t, async () => ({ outcome: exited(3), logTail: '' }), { assignment: withInput, probe: 'started', storedLogsSentUntilNs: 42n });
  await reattached.task.run(true);
  const r = reattached.executions[0]!;
  assert.equal(r.recovery, 'reattach');
  assert.equal(r.logsSentUntilNs, 42n);
  assert.equal(r.inputFile, undefined, 'a reattached container has its input already');
  assert.deepEqual(states(reattached.updates), ['TASK_STATE_FAILED']);

  const rerun = await runningTask(t, async (exec) => {
    assert.equal(await readFile(exec.inputFile!, 'utf8'), 'input bytes');
    return { outcome: exited(3), logTail: '' };
  }, { assignment: withInput, probe: 'not-started', storedLogsSentUntilNs: 42n });
  await rerun.task.run(true);
  const e = rerun.executions[0]!;
  assert.equal(e.recovery, 'restart');
  assert.equal(e.logsSentUntilNs, undefined);
  assert.ok(e.inputFile);
});

test('running task: pull progress reaches the monitor every time, the master at most every 2 s', async (t) => {
  const h = await runningTask(t, async (exec) => {
    exec.onPhase('pulling');
    for (const [current, advance] of [[10, 0], [20, 500], [30, 1500], [40, 100], [50, 2000]] as const) {
      h.clock.advance(advance);
      exec.onPullProgress(current, 100);
    }
    return { outcome: exited(0), logTail: '' };
  });
  await h.task.run(false);
  assert.deepEqual(h.progress.map((p) => p.currentBytes), [10, 20, 30, 40, 50]);
  assert.ok(h.progress.every((p) => p.kind === 'pull' && p.taskId === 't1'));
  const pullUpdates = h.updates.filter((u) => u.extra?.pull).map((u) => u.extra!.pull!.currentBytes);
  assert.deepEqual(pullUpdates, [10, 30, 50]);
});

// ------------------------------------------------------------------ task transfers

function transfersWith(over: { session?: { alive: boolean; conn: Partial<MasterConnection> }; taskSignal?: AbortSignal } = {}) {
  const records = new Map<string, { uploaded: boolean }>();
  const progress: TaskProgressEvent[] = [];
  const closing = new AbortController();
  const signalsUsed: AbortSignal[] = [];
  const deps: TaskTransfersDeps = {
    master: {
      // As MasterSession does for a ready session: run the call, stop on an aborted signal.
      withMaster: async (signal, _what, fn) => {
        signalsUsed.push(signal);
        signal.throwIfAborted();
        return fn(over.session?.conn as MasterConnection);
      },
      get session() {
        return over.session as Session | undefined;
      },
      closingSignal: closing.signal,
    },
    store: {
      getTask: (taskId, attempt) => ({ result: records.get(`${taskId}#${attempt}`) }) as TaskRecord,
      markResultUploaded: (taskId, attempt) => void records.set(`${taskId}#${attempt}`, { uploaded: true }),
    },
    logger: silentLogger(),
    taskSignal: () => over.taskSignal,
    onProgress: (e) => void progress.push(e),
  };
  return { transfers: new TaskTransfers(deps), records, progress, closing, signalsUsed };
}

test('task transfers: an input whose checksum does not match is fetched once more from the start; a second mismatch fails', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'input.tar.gz');
  const seen: boolean[] = [];
  let mismatches = 1;
  const conn: Partial<MasterConnection> = {
    downloadInput: async (taskId, _attempt, dest, expected) => {
      seen.push(existsSync(dest));
      if (mismatches-- > 0) {
        await writeFile(dest, 'stale partial');
        throw new InputChecksumError(taskId, expected, 'ff');
      }
      await writeFile(dest, 'good input');
      return 10;
    },
  };
  const { transfers } = transfersWith({ session: { alive: true, conn } });
  const task = { taskId: 't1', attempt: 1, assignment: { inputSha256: 'aa' }, signal: new AbortController().signal };
  await transfers.downloadInput(task, file);
  assert.deepEqual(seen, [false, false], 'the retry starts from an empty file, not the stale partial');
  assert.equal(await readFile(file, 'utf8'), 'good input');

  await rm(file);
  seen.length = 0;
  mismatches = 2;
  await assert.rejects(transfers.downloadInput(task, file), InputChecksumError);
  assert.equal(seen.length, 2, 'one retry, not more');

  // Other errors are not the transfer's to retry (withMaster retries transient ones).
  seen.length = 0;
  conn.downloadInput = async () => {
    seen.push(true);
    throw grpcError(status.FAILED_PRECONDITION, 'task t1 has no input');
  };
  await assert.rejects(transfers.downloadInput(task, file), /has no input/);
  assert.equal(seen.length, 1);
});

test('task transfers: a result upload runs once however many ask, is marked in the store, and is not sent again', async () => {
  let uploads = 0;
  let finish!: () => void;
  const conn: Partial<MasterConnection> = {
    uploadResult: (_taskId, _attempt, _file, sha256, _signal, onProgress) => {
      uploads++;
      onProgress?.(5, 10);
      return new Promise((resolve) => (finish = () => resolve({ size: 10, sha256 })));
    },
  };
  const { transfers, records, progress } = transfersWith({ session: { alive: true, conn } });
  const task = { taskId: 't1', attempt: 1 };
  const result = { path: '/spool/r', size: 10, sha256: 'ab'.repeat(32) };
  const signal = new AbortController().signal;
  const a = transfers.uploadOnce(task, result, signal);
  const b = transfers.uploadOnce(task, result, signal);
  assert.equal(a, b, 'the second asker shares the upload in flight');
  finish();
  await a;
  assert.equal(uploads, 1);
  assert.deepEqual(records.get('t1#1'), { uploaded: true });
  assert.deepEqual(progress, [{ taskId: 't1', attempt: 1, kind: 'upload', currentBytes: 5, totalBytes: 10 }]);
  await transfers.uploadOnce(task, result, signal);
  assert.equal(uploads, 1, 'an uploaded result is not sent again');
  // Another attempt is its own upload.
  const other = transfers.uploadOnce({ taskId: 't1', attempt: 2 }, result, signal);
  finish();
  await other;
  assert.equal(uploads, 2);
});

test('task transfers: without a live session an upload fails as retryable; uploadResult stops with the task\'s signal, else the worker\'s', async () => {
  const down = transfersWith({ session: { alive: false, conn: {} } });
  await assert.rejects(down.transfers.uploadOnce({ taskId: 't1', attempt: 1 }, { path: '/r', size: 1, sha256: 'a' }, new AbortController().signal), NotConnectedError);

  const stopped = new AbortController();
  stopped.abort('cancelled');
  const ownTask = transfersWith({ session: { alive: true, conn: {} }, taskSignal: stopped.signal });
  await assert.rejects(ownTask.transfers.uploadResult({ taskId: 't1', attempt: 1 }, { path: '/r', size: 1, sha256: 'a' }));
  assert.equal(ownTask.signalsUsed[0], stopped.signal);

  const recovered = transfersWith({ session: { alive: true, conn: {} } });
  recovered.closing.abort();
  await assert.rejects(recovered.transfers.uploadResult({ taskId: 't1', attempt: 1 }, { path: '/r', size: 1, sha256: 'a' }));
  assert.equal(recovered.signalsUsed[0], recovered.closing.signal);
});

// ------------------------------------------------------------------ recovery

function record(taskId: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    taskId,
    attempt: 1,
    assignment: assignment(taskId),
    state: TaskState.TASK_STATE_RUNNING,
    gpuIndexes: [],
    logTail: '',
    createdAt: 1,
    updatedAt: 1,
    ...over,
  };
}

const cleanExit: TaskOutcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: 7, resultSha256: 'ab'.repeat(32) };

function recoveryWith(store: { unfinished?: TaskRecord[]; pending?: TaskRecord[] }, over: Partial<RecoveryDeps> = {}) {
  const updates: (Update & { taskId: string })[] = [];
  const takenUp: { assignment: TaskAssignment; reservation: Reservation }[] = [];
  const closing = new AbortController();
  const deps: RecoveryDeps = {
    store: { unfinishedTasks: () => store.unfinished ?? [], pendingUploads: () => store.pending ?? [] },
    budget: { maxTasks: 4, cpus: 8, memoryBytes: 8 * 1024 * MiB, gpuIndexes: [0, 1], taskDefaults: { cpus: 1, memoryBytes: 256 * MiB } },
    logger: silentLogger(),
    transfers: { uploadOnce: async () => undefined },
    closingSignal: closing.signal,
    taskSignal: () => undefined,
    update: (task, state, extra) => void updates.push({ taskId: task.taskId, state, extra }),
    takeUp: (a, reservation) => void takenUp.push({ assignment: a, reservation }),
    ...over,
  };
  return { recovery: new Recovery(deps), updates, takenUp, closing };
}

test('recovery: unfinished tasks are settled by what the record holds, taken up again, or left for the upload on connect', async (t) => {
  const dir = await tempDir(t);
  const uploadedFile = path.join(dir, 'done.tar.gz');
  await writeFile(uploadedFile, 'archive');
  const { recovery, updates, takenUp } = recoveryWith({
    unfinished: [
      record('uploaded', { outcome: cleanExit, result: { path: uploadedFile, size: 7, sha256: 'ab'.repeat(32), uploaded: true } }),
      record('exited-1', { outcome: { ...cleanExit, exitCode: 1, message: 'exit 1', resultSize: 0, resultSha256: '' } }),
      record('waiting-upload', { outcome: cleanExit, result: { path: '/spool/w', size: 7, sha256: 'ab'.repeat(32), uploaded: false } }),
      record('no-spec', { assignment: { ...assignment('no-spec'), spec: undefined } }),
      record('interrupted', { gpuIndexes: [1], assignment: assignment('interrupted', { spec: { ...assignment('x').spec!, limits: { cpus: 2, memoryBytes: 0, gpus: 1, pids: 0, timeoutMs: 0 } } }) }),
    ],
  });
  recovery.recoverInterruptedTasks();
  const byTask = new Map(updates.map((u) => [u.taskId, u]));
  assert.equal(byTask.get('uploaded')?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.equal(byTask.get('exited-1')?.state, TaskState.TASK_STATE_FAILED);
  assert.equal(byTask.get('exited-1')?.extra?.message, 'exit 1');
  assert.equal(byTask.has('waiting-upload'), false, 'its result is uploaded on connect first');
  assert.equal(byTask.get('no-spec')?.state, TaskState.TASK_STATE_FAILED);
  assert.equal(byTask.get('no-spec')?.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR);
  assert.match(byTask.get('no-spec')?.extra?.message ?? '', /has no spec to run it again/);
  assert.equal(byTask.has('interrupted'), false, 'a task taken up reports through its own run');
  assert.deepEqual(takenUp.map((u) => u.assignment.taskId), ['interrupted']);
  // Its reservation: the spec's CPUs, the node default for a zero memory limit, the GPUs it held.
  assert.deepEqual(takenUp[0]!.reservation, { cpus: 2, memoryBytes: 256 * MiB, gpuIndexes: [1] });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(existsSync(uploadedFile), false, 'a settled task\'s result file is removed');
});

test('recovery: pending results are uploaded before subscribing; recovered ones are settled, running ones left to their loop', async (t) => {
  const dir = await tempDir(t);
  const files = await Promise.all(['ok', 'running', 'refused', 'after'].map(async (n) => {
    const f = path.join(dir, `${n}.tar.gz`);
    await writeFile(f, 'archive');
    return f;
  }));
  const pending = ['ok', 'running', 'refused', 'after'].map((id, i) =>
    record(id, { outcome: cleanExit, result: { path: files[i]!, size: 7, sha256: 'ab'.repeat(32), uploaded: false } }));
  const uploaded: string[] = [];
  const runningHere = new AbortController();
  const { recovery, updates } = recoveryWith({ pending }, {
    taskSignal: (taskId) => (taskId === 'running' ? runningHere.signal : undefined),
    transfers: {
      uploadOnce: async (task) => {
        if (task.taskId === 'refused') throw Object.assign(grpcError(status.INVALID_ARGUMENT, 'too large'), toServiceError(new ResultTooLargeError('too large')));
        uploaded.push(task.taskId);
      },
    },
  });
  await recovery.resumePendingUploads({ alive: true } as Session);
  assert.deepEqual(uploaded, ['ok', 'running', 'after'], 'a refusal does not stop the others');
  const byTask = new Map(updates.map((u) => [u.taskId, u]));
  assert.equal(byTask.get('ok')?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.equal(byTask.get('after')?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.equal(byTask.has('running'), false, 'the task running here reports its own end');
  assert.equal(byTask.get('refused')?.state, TaskState.TASK_STATE_FAILED);
  assert.equal(byTask.get('refused')?.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  assert.match(byTask.get('refused')?.extra?.message ?? '', /^result upload failed: too large/);
});

test('recovery: a transient failure ends the catch-up with the error and settles nothing; a dead session stops it', async () => {
  const pending = [record('a', { outcome: cleanExit, result: { path: '/spool/a', size: 7, sha256: 'ab', uploaded: false } }), record('b', { outcome: cleanExit, result: { path: '/spool/b', size: 7, sha256: 'ab', uploaded: false } })];
  const tried: string[] = [];
  const flaky = recoveryWith({ pending }, {
    transfers: {
      uploadOnce: async (task) => {
        tried.push(task.taskId);
        throw grpcError(status.UNAVAILABLE, 'master went away');
      },
    },
  });
  await assert.rejects(flaky.recovery.resumePendingUploads({ alive: true } as Session), /master went away/);
  assert.deepEqual(tried, ['a']);
  assert.deepEqual(flaky.updates, []);

  const session = { alive: true } as Session;
  const dying = recoveryWith({ pending }, {
    transfers: {
      uploadOnce: async (task) => {
        tried.push(task.taskId);
        session.alive = false;
      },
    },
  });
  tried.length = 0;
  await dying.recovery.resumePendingUploads(session);
  assert.deepEqual(tried, ['a'], 'nothing more is sent on a session found dead');
});
