// A task attempt with data sets: leased before the executor runs (which gets them as read-only
// binds), the fetch progress reported on ACCEPTED updates (throttled, the end always), the leases
// given back when the attempt ends, and a data set that cannot be had ending the attempt with an
// outcome that names it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { DataKind, OutcomeKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment } from '../../src/protocol/gen/hivemind/v1/node.js';
import type { TaskDataProgressEvent, TaskExecution } from '../../src/worker/contracts.js';
import { CacheFullError, DataCorruptError, type DataLease, type DataRef } from '../../src/worker/data-cache/data-cache.js';
import { LogForwarder } from '../../src/worker/log-forwarder.js';
import type { UpdateExtra } from '../../src/worker/outbox.js';
import { RunningTask } from '../../src/worker/running-task.js';

const D = 'd'.repeat(64);

async function attempt(acquire: (ref: DataRef, holder: string, signal: AbortSignal, onProgress?: (p: { receivedBytes: number; totalBytes: number }) => void) => Promise<DataLease>) {
  const spoolDir = await mkdtemp(path.join(tmpdir(), 'hm-rtd-'));
  const clock = new ManualClock();
  const updates: { state: TaskState; extra?: UpdateExtra }[] = [];
  const events: TaskDataProgressEvent[] = [];
  const executions: TaskExecution[] = [];
  const a = {
    taskId: 't1',
    attempt: 2,
    spec: { image: 'busybox', command: ['true'], env: new Map(), limits: { cpus: 1, memoryBytes: 1 << 26, gpus: 0, pids: 0, timeoutMs: 0 }, maxOutputBytes: 0, data: [{ sha256: `sha256:${D}`, path: '/models', size: 1000, kind: DataKind.DATA_KIND_DIR, url: '' }] },
    inputSize: 0,
    inputSha256: '',
  } as unknown as TaskAssignment;
  const logs = new LogForwarder({ taskId: 't1', attempt: 2, clock, flushMs: 1, maxBufferedBytes: 1 << 20, openSink: () => undefined });
  const task = new RunningTask(a, { cpus: 1, memoryBytes: 1 << 26, gpuIndexes: [] }, logs, {
    executor: {
      probe: async () => 'not-started',
      execute: async (exec) => {
        executions.push(exec);
        return { outcome: { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 3, message: '', durationMs: 1 }, logTail: '' };
      },
    },
    store: { getTask: () => undefined, setExecution: () => undefined },
    clock,
    logger: silentLogger(),
    spoolDir,
    update: (_t, state, extra) => void updates.push({ state, ...(extra ? { extra } : {}) }),
    downloadInput: async () => undefined,
    uploadResult: async () => undefined,
    onLog: () => undefined,
    onProgress: () => undefined,
    onDataProgress: (e) => void events.push(e),
    onLeftovers: () => undefined,
    data: { acquire, urlSize: async () => 0 },
  });
  await task.run(false);
  await rm(spoolDir, { recursive: true, force: true });
  return { updates, events, executions };
}

test('running task with data: leased as taskId:attempt before the run, bound read-only, progress on ACCEPTED, released at the end', async () => {
  const holders: string[] = [];
  let released = 0;
  const h = await attempt(async (ref, holder, _signal, onProgress) => {
    holders.push(holder);
    assert.deepEqual(ref.via, { taskId: 't1', attempt: 2 });
    for (const n of [100, 200, 600]) onProgress?.({ receivedBytes: n, totalBytes: 1000 });
    return { path: `/cache/entries/${ref.digest}`, release: () => void released++ };
  });
  assert.deepEqual(holders, ['t1:2']);
  assert.deepEqual(h.executions[0]!.dataMounts, [{ hostPath: `/cache/entries/${D}`, containerPath: '/models' }]);
  assert.deepEqual(h.events.map((e) => e.receivedBytes), [100, 200, 600, 1000], 'every tick to listeners, the end included');
  const dataUpdates = h.updates.filter((u) => u.extra?.data);
  assert.ok(dataUpdates.every((u) => u.state === TaskState.TASK_STATE_ACCEPTED));
  // the clock does not move: the first tick and the end pass the throttle, nothing between
  assert.deepEqual(dataUpdates.map((u) => u.extra!.data!.receivedBytes), [100, 1000]);
  assert.equal(released, 1, 'released once, though both the end of the run and the finally release');
  assert.equal(h.updates.at(-1)!.state, TaskState.TASK_STATE_FAILED, 'the task itself exited 3');
});

test('running task with data: a corrupt data set fails it INPUT_REJECTED naming the data set; the container never runs', async () => {
  const h = await attempt(async (ref) => {
    throw new DataCorruptError(`data set sha256:${ref.digest}: the bytes hash to ${'0'.repeat(64)}; the download was discarded`);
  });
  assert.equal(h.executions.length, 0);
  const last = h.updates.at(-1)!;
  assert.equal(last.state, TaskState.TASK_STATE_FAILED);
  assert.equal(last.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_INPUT_REJECTED);
  assert.match(last.extra!.message!, new RegExp(`^data rejected: data set sha256:${D}: the bytes hash to`));
});

test('running task with data: a cache that cannot make room fails it as a node problem, saying so', async () => {
  const h = await attempt(async (ref) => {
    throw new CacheFullError(`data set sha256:${ref.digest} does not fit the data cache: it is 1000 B, over the whole cache budget of 10 B (--cache-max)`);
  });
  const last = h.updates.at(-1)!;
  assert.equal(last.extra?.outcome?.kind, OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR);
  assert.match(last.extra!.message!, /^data cache: data set sha256:d+ does not fit the data cache: .*--cache-max/);
});
