// The parts the Worker is composed of, each with small fakes: the outbox, the set of active
// tasks, the reporter and the reclaimer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { TaskState, type Capacity, type ResourceReport } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskUpdate, TaskUpdateAck } from '../../src/protocol/gen/hivemind/v1/node.js';
import { ActiveTasks, type TrackedTask } from '../../src/worker/active-tasks.js';
import type { AbortReason, ContributionPoint } from '../../src/worker/contracts.js';
import type { MasterConnection } from '../../src/worker/master-connection.js';
import { Outbox, type OutboxDeps } from '../../src/worker/outbox.js';
import { Reclaimer } from '../../src/worker/reclaimer.js';
import { Reporter, type ReporterDeps } from '../../src/worker/reporter.js';
import type { HostSample } from '../../src/worker/resources/resource-probe.js';
import { spoolName, taskKey } from '../../src/worker/running-task.js';
import type { TaskRecord } from '../../src/worker/store/worker-store.js';

const FREE: Capacity = { cpus: 2, memoryBytes: 1024, gpus: 0, gpuIndexes: [], slots: 1 } as unknown as Capacity;

function grpcError(code: status): Error {
  return Object.assign(new Error(`${code} ${status[code]}`), { code, details: status[code] });
}

// ------------------------------------------------------------------ outbox

function fakeOutboxStore() {
  let nextId = 1;
  const seqs = new Map<string, number>();
  const rows: { id: number; update: TaskUpdate }[] = [];
  return {
    rows,
    appendUpdate(u: Omit<TaskUpdate, 'seq' | 'free' | 'accepting'>): TaskUpdate {
      const key = taskKey(u.taskId, u.attempt);
      const seq = (seqs.get(key) ?? 0) + 1;
      seqs.set(key, seq);
      const update = { ...u, seq } as TaskUpdate;
      rows.push({ id: nextId++, update });
      return update;
    },
    outbox(limit = 1000) {
      return rows.slice(0, limit);
    },
    ackOutbox(id: number) {
      const i = rows.findIndex((r) => r.id === id);
      if (i >= 0) rows.splice(i, 1);
    },
  };
}

function outboxWith(updateTask: (u: TaskUpdate) => Promise<Partial<TaskUpdateAck>>) {
  const store = fakeOutboxStore();
  const lost: Error[] = [];
  const session = {
    alive: true,
    conn: { updateTask: async (u: TaskUpdate) => ({ superseded: false, cancelRequested: false, ...(await updateTask(u)) }) } as unknown as MasterConnection,
    markLost: (err: Error) => {
      session.alive = false;
      lost.push(err);
    },
  };
  const announced: TaskUpdate[] = [];
  const acks: [TaskUpdate, TaskUpdateAck][] = [];
  let current: typeof session | undefined = undefined;
  const deps: OutboxDeps = {
    store,
    clock: new ManualClock(),
    logger: silentLogger(),
    session: () => current,
    capacity: () => ({ free: FREE, accepting: true }),
    onUpdate: (u) => announced.push(u),
    onAck: (u, ack) => acks.push([u, ack]),
  };
  return { outbox: new Outbox(deps), store, session, lost, announced, acks, connect: () => (current = session) };
}

test('outbox: updates are stored while no master is there, then delivered in order with the capacity of the moment', async () => {
  const sent: TaskUpdate[] = [];
  const o = outboxWith(async (u) => {
    sent.push(u);
    return {};
  });
  const task = { taskId: 't1', attempt: 1 };
  o.outbox.append(task, TaskState.TASK_STATE_ACCEPTED);
  o.outbox.append(task, TaskState.TASK_STATE_RUNNING, { message: 'go' });
  assert.equal(o.announced.length, 2);
  await o.outbox.settled();
  assert.equal(o.store.rows.length, 2, 'kept while disconnected');
  o.connect();
  await o.outbox.flush();
  assert.deepEqual(sent.map((u) => [u.seq, u.state, u.message, u.accepting]), [
    [1, TaskState.TASK_STATE_ACCEPTED, '', true],
    [2, TaskState.TASK_STATE_RUNNING, 'go', true],
  ]);
  assert.deepEqual(sent[0]!.free, FREE);
  assert.equal(o.store.rows.length, 0);
  assert.equal(o.acks.length, 2);
});

test('outbox: an update the master refuses for good is dropped; a transient failure keeps it and ends the session', async () => {
  let call = 0;
  const o = outboxWith(async () => {
    call++;
    if (call === 1) throw grpcError(status.INVALID_ARGUMENT);
    if (call === 3) throw grpcError(status.UNAVAILABLE);
    return {};
  });
  o.connect();
  for (const s of [TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_SUCCEEDED]) o.outbox.append({ taskId: 't', attempt: 1 }, s);
  await assert.rejects(o.outbox.flush(), (err: unknown) => (err as { code?: number }).code === status.UNAVAILABLE);
  assert.equal(o.lost.length, 1);
  assert.equal(o.session.alive, false);
  // The refused one is gone, the delivered one acked, the failed one waits for the next session.
  assert.deepEqual(o.store.rows.map((r) => r.update.state), [TaskState.TASK_STATE_SUCCEEDED]);
});

test('outbox: the master\'s answers reach onAck', async () => {
  const o = outboxWith(async () => ({ cancelRequested: true }));
  o.connect();
  o.outbox.append({ taskId: 't', attempt: 2 }, TaskState.TASK_STATE_RUNNING);
  await o.outbox.flush();
  assert.equal(o.acks.length, 1);
  assert.equal(o.acks[0]![1].cancelRequested, true);
  assert.equal(o.acks[0]![0].attempt, 2);
});

// ------------------------------------------------------------------ active tasks

class FakeTask implements TrackedTask {
  readonly key: string;
  done: Promise<void> = Promise.resolve();
  reason: AbortReason | undefined;
  private finish!: () => void;
  readonly finished = new Promise<void>((r) => (this.finish = r));
  constructor(
    readonly taskId: string,
    readonly attempt: number,
    public reservation: { cpus: number; memoryBytes: number; gpuIndexes: number[] } | undefined,
    private readonly endsOnAbort = true,
  ) {
    this.key = taskKey(taskId, attempt);
  }
  get aborted(): boolean {
    return this.reason !== undefined;
  }
  abort(reason: AbortReason): void {
    this.reason ??= reason;
    if (this.endsOnAbort) this.end();
  }
  end(): void {
    this.finish();
  }
}

function track(set: ActiveTasks<FakeTask>, t: FakeTask): FakeTask {
  set.add(t);
  set.track(t, t.finished);
  return t;
}

test('active tasks: reservations of what runs, abort by attempt or by task, and a task leaves the set when its run ends', async () => {
  const set = new ActiveTasks<FakeTask>(silentLogger());
  const a1 = track(set, new FakeTask('a', 1, { cpus: 1, memoryBytes: 10, gpuIndexes: [0] }));
  const a2 = track(set, new FakeTask('a', 2, undefined));
  const b1 = track(set, new FakeTask('b', 1, { cpus: 2, memoryBytes: 20, gpuIndexes: [] }));
  assert.equal(set.size, 3);
  assert.deepEqual(set.reservations(), [a1.reservation, b1.reservation]);
  assert.ok(set.has('a', 2) && set.get('b', 1) === b1 && !set.has('b', 2));

  set.abort('b', 2, 'cancelled');
  assert.equal(b1.reason, undefined, 'another attempt is left alone');
  set.abort('a', 0, 'superseded');
  assert.equal(a1.reason, 'superseded');
  assert.equal(a2.reason, 'superseded');
  assert.equal(set.isRunning('a'), false);
  assert.equal(set.isRunning('b'), true);
  await Promise.all([a1.done, a2.done]);
  assert.deepEqual(set.list().map((t) => t.key), [b1.key]);
  set.cancelAll('shutdown');
  await b1.done;
  assert.equal(b1.reason, 'shutdown');
  assert.equal(set.size, 0);
});

test('active tasks: drain waits for the tasks, and past its timeout aborts the rest with shutdown', async () => {
  const set = new ActiveTasks<FakeTask>(silentLogger());
  await set.drain(10); // nothing runs: returns at once
  const quick = track(set, new FakeTask('q', 1, undefined));
  setTimeout(() => quick.end(), 5);
  await set.drain(5_000);
  assert.equal(quick.reason, undefined);
  assert.equal(set.size, 0);

  const slow = track(set, new FakeTask('s', 1, undefined));
  await set.drain(20);
  assert.equal(slow.reason, 'shutdown');
  assert.equal(set.size, 0);
});

// ------------------------------------------------------------------ reporter

function sample(atMs: number, dockerOk = true): HostSample {
  return {
    atMs,
    cpuPercent: 50,
    memoryUsedBytes: 1,
    memoryTotalBytes: 2,
    diskUsedBytes: 0,
    diskTotalBytes: 0,
    netRxBytesPerSec: 0,
    netTxBytesPerSec: 0,
    gpus: [],
    docker: { ok: dockerOk },
  };
}

function reporterWith(over: Partial<ReporterDeps> = {}) {
  const sent: ResourceReport[] = [];
  const points: ContributionPoint[] = [];
  const stored: ResourceReport[] = [];
  let total = 0;
  const deps: ReporterDeps = {
    probe: { sample: async () => sample(1_000) },
    executor: { usage: async () => [] },
    store: {
      addSample: (r) => void stored.push(r),
      addContribution: (p) => {
        total += p.score;
        return { ...p, total };
      },
    },
    clock: new ManualClock(),
    logger: silentLogger(),
    reportIntervalMs: undefined,
    sampleRetention: { maxAgeMs: 1, maxCount: 1 },
    state: () => ({ free: FREE, lifecycleState: 'connected', accepting: true }),
    onSample: () => undefined,
    onReport: () => undefined,
    onContribution: (p) => void points.push(p),
    send: (r) => void sent.push(r),
    ...over,
  };
  return { reporter: new Reporter(deps), sent, points, stored };
}

test('reporter: the interval is the configured one, never longer than the master\'s', async () => {
  const own = reporterWith({ reportIntervalMs: 5_000 }).reporter;
  assert.equal(own.intervalMs(), 5_000);
  own.setMasterInterval(2_000);
  assert.equal(own.intervalMs(), 2_000);
  own.setMasterInterval(10_000);
  assert.equal(own.intervalMs(), 5_000);
  await own.stop();
  const master = reporterWith().reporter;
  master.setMasterInterval(3_000);
  assert.equal(master.intervalMs(), 3_000);
  await master.stop();
});

test('reporter: a report asked for while one is on its way follows it once; each is stored, scored and sent; none after stop', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let samples = 0;
  const seen: HostSample[] = [];
  const r = reporterWith({
    probe: {
      sample: async () => {
        samples++;
        if (samples === 1) await gate;
        return sample(1_000 * samples);
      },
    },
    onSample: (s) => void seen.push(s),
  });
  r.reporter.reportNow();
  r.reporter.reportNow();
  r.reporter.reportNow();
  release();
  for (let i = 0; i < 50 && r.sent.length < 2; i++) await new Promise((res) => setTimeout(res, 2));
  assert.equal(samples, 2, 'one follow-up for the two asked while in flight');
  assert.deepEqual(r.sent.map((x) => x.seq), [1, 2]);
  assert.equal(r.stored.length, 2);
  assert.equal(seen.length, 2);
  assert.equal(r.points.length, 2);
  assert.equal(r.points[1]!.intervalMs, 1_000, 'the second point covers the time since the first report');
  await r.reporter.stop();
  r.reporter.reportNow();
  await new Promise((res) => setTimeout(res, 5));
  assert.equal(r.sent.length, 2);
});

// ------------------------------------------------------------------ reclaimer

test('reclaimer: keeps what running tasks and pending uploads own, removes the rest; leftovers wait for Docker', async (t) => {
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'hm-reclaim-'));
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  const files = {
    running: spoolName('run', 1, 'input.tar.gz'),
    pending: spoolName('up', 3, 'result.tar.gz'),
    stray: spoolName('old', 1, 'input.tar.gz'),
  };
  for (const f of Object.values(files)) await writeFile(path.join(spoolDir, f), 'x');
  const pending = { taskId: 'up', attempt: 3, result: { path: path.join(spoolDir, files.pending), size: 1, sha256: '', uploaded: false } } as TaskRecord;
  const keeps: string[][] = [];
  const reclaimer = new Reclaimer({
    executor: {
      reclaim: async (keep) => {
        keeps.push([...keep]);
        return { containers: [], volumes: [] };
      },
    },
    store: { pendingUploads: () => [pending] },
    logger: silentLogger(),
    spoolDir,
    intervalMs: 60_000,
    running: () => [{ taskId: 'run', attempt: 1 }],
  });
  reclaimer.dockerAnswered();
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(keeps.length, 0, 'nothing left behind yet: Docker answering does not reclaim');

  reclaimer.addLeftovers('gone');
  reclaimer.dockerAnswered();
  for (let i = 0; i < 100 && existsSync(path.join(spoolDir, files.stray)); i++) await new Promise((res) => setTimeout(res, 2));
  assert.deepEqual(keeps, [['run', 'up']]);
  assert.ok(existsSync(path.join(spoolDir, files.running)));
  assert.ok(existsSync(path.join(spoolDir, files.pending)));
  assert.ok(!existsSync(path.join(spoolDir, files.stray)));

  reclaimer.stop();
  reclaimer.soon();
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(keeps.length, 1, 'stopped: no more reclaiming');
});
