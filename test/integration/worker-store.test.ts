import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { OutcomeKind, TaskProgress, TaskState, type ResourceReport } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskAssignment } from '../../src/protocol/gen/hivemind/v1/node.js';
import { MIGRATIONS } from '../../src/worker/store/migrations.js';
import { EXEC_HISTORY_COMMAND_CHARS, EXEC_HISTORY_KEEP, WorkerStore } from '../../src/worker/store/worker-store.js';
import { loadIdentity, saveIdentity, identityPath } from '../../src/worker/identity-file.js';

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hm-worker-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const assignment = (taskId: string, attempt = 1): TaskAssignment => ({
  taskId,
  attempt,
  spec: { image: 'busybox', command: ['echo', 'hi'], env: new Map([['A', '1'], ['__proto__', 'kept']]), limits: { cpus: 1, memoryBytes: 1 << 20, pids: 10, gpus: 0, timeoutMs: 1000 }, network: 0, maxOutputBytes: 0, data: [], service: undefined, isolation: undefined, egressRateBps: undefined },
  inputSize: 0,
  inputSha256: '',
});

const report = (atMs: number): ResourceReport => ({
  seq: 1, atMs, cpuPercent: 1, memoryUsedBytes: 1, memoryTotalBytes: 2, diskUsedBytes: 1, diskTotalBytes: 2,
  netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [],
  free: { cpus: 1, memoryBytes: 1, gpuIndexes: [], taskSlots: 1 }, lifecycleState: 'connected', accepting: true,
});

test('migrations set user_version, WAL is on, and reopening keeps everything', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  let store = WorkerStore.open(file);
  assert.equal(store.schemaVersion, MIGRATIONS.length);
  store.insertTask(assignment('t1'), [0], 100);
  const u = store.appendUpdate({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, message: '', atMs: 101 });
  assert.equal(u.seq, 1);
  store.close();
  store.close(); // idempotent

  const raw = new BetterSqlite3(file, { readonly: true });
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  raw.close();

  store = WorkerStore.open(file);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, MIGRATIONS.length, 'a reopen applies nothing twice');
  const rec = store.getTask('t1', 1)!;
  // Every env name survives the JSON row, __proto__ included.
  assert.deepEqual(rec.assignment, assignment('t1'));
  assert.deepEqual([...rec.assignment.spec!.env.keys()], ['A', '__proto__']);
  assert.deepEqual(rec.gpuIndexes, [0]);
  assert.equal(rec.state, TaskState.TASK_STATE_ACCEPTED);
  // seq keeps counting after a reopen: the master dedupes on it.
  assert.equal(store.appendUpdate({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_RUNNING, message: '', atMs: 102 }).seq, 2);
  assert.deepEqual(store.outbox().map((e) => [e.update.taskId, e.update.seq, e.update.state]), [
    ['t1', 1, TaskState.TASK_STATE_ACCEPTED],
    ['t1', 2, TaskState.TASK_STATE_RUNNING],
  ]);
});

test('a database from a newer worker is refused with an actionable message', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  const raw = new BetterSqlite3(file);
  raw.pragma(`user_version = ${MIGRATIONS.length + 5}`);
  raw.close();
  assert.throws(() => WorkerStore.open(file), /newer than this worker understands.*upgrade the worker/);
});

test('outbox keeps production order across tasks, and ack removes exactly one entry', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  store.insertTask(assignment('a'), [], 1);
  store.insertTask(assignment('b', 2), [], 1);
  const order: [string, number][] = [['a', 3], ['b', 3], ['a', 5], ['b', 5], ['a', 6], ['b', 6]];
  order.forEach(([id, state], i) => store.appendUpdate({ taskId: id, attempt: id === 'a' ? 1 : 2, state, message: `m${i}`, atMs: 10 + i }));
  const box = store.outbox();
  assert.deepEqual(box.map((e) => e.update.message), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  assert.deepEqual(box.filter((e) => e.update.taskId === 'a').map((e) => e.update.seq), [1, 2, 3]);
  assert.deepEqual(box.filter((e) => e.update.taskId === 'b').map((e) => e.update.seq), [1, 2, 3]);
  store.ackOutbox(box[0]!.id);
  store.ackOutbox(box[0]!.id); // a duplicate ack is harmless
  assert.deepEqual(store.outbox().map((e) => e.update.message), ['m1', 'm2', 'm3', 'm4', 'm5']);
  assert.equal(store.outboxSize(), 5);
  // terminal states finish the task and record the outcome and history
  const outcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: 0, resultSha256: '' };
  assert.deepEqual(store.unfinishedTasks().map((r) => r.taskId), ['a', 'b']);
  store.appendUpdate({ taskId: 'a', attempt: 1, state: TaskState.TASK_STATE_SUCCEEDED, message: '', atMs: 99, outcome });
  assert.deepEqual(store.unfinishedTasks().map((r) => r.taskId), ['b']);
  const a = store.getTask('a', 1)!;
  assert.equal(a.finishedAt, 99);
  assert.deepEqual(a.outcome, outcome);
  assert.deepEqual(store.taskEvents('a', 1).map((e) => [e.seq, e.state]), [[1, 3], [2, 5], [3, 6], [4, TaskState.TASK_STATE_SUCCEEDED]]);
});

test('results: recorded before upload, listed as pending until marked uploaded', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  store.insertTask(assignment('r'), [], 1);
  const outcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: 3, resultSha256: 'abc' };
  store.setExecution('r', 1, outcome, { path: '/spool/r.tgz', size: 3, sha256: 'abc' }, 'tail');
  assert.deepEqual(store.pendingUploads().map((r) => [r.taskId, r.result, r.logTail]), [['r', { path: '/spool/r.tgz', size: 3, sha256: 'abc', uploaded: false }, 'tail']]);
  store.markResultUploaded('r', 1);
  assert.deepEqual(store.pendingUploads(), []);
  assert.equal(store.getTask('r', 1)!.result!.uploaded, true);
});

test('a rejected attempt may be taken later; other resends change nothing', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  store.insertTask(assignment('x'), [], 1);
  store.appendUpdate({ taskId: 'x', attempt: 1, state: TaskState.TASK_STATE_REJECTED, message: 'full', atMs: 2 });
  assert.equal(store.getTask('x', 1)!.finishedAt, 2);
  store.insertTask(assignment('x'), [1], 3);
  const x = store.getTask('x', 1)!;
  assert.equal(x.finishedAt, undefined);
  assert.deepEqual(x.gpuIndexes, [1]);
  assert.equal(store.appendUpdate({ taskId: 'x', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, message: '', atMs: 4 }).seq, 2);
  store.insertTask(assignment('x'), [2], 5);
  assert.deepEqual(store.getTask('x', 1)!.gpuIndexes, [1], 'a running attempt is not overwritten by a resend');
});

test('resource samples are bounded by age and by count', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  const retention = { maxAgeMs: 1000, maxCount: 5 };
  for (let i = 0; i < 20; i++) store.addSample(report(10_000 + i * 100), retention);
  // now = 11_900: age keeps >= 10_900 (11 samples), count keeps the newest 5
  assert.deepEqual(store.samples().map((s) => s.atMs), [11_500, 11_600, 11_700, 11_800, 11_900]);
  store.addSample(report(20_000), retention);
  assert.deepEqual(store.samples().map((s) => s.atMs), [20_000], 'old samples age out');
  assert.deepEqual(store.samples(20_000).length, 1);
});

test('identity file: absent, saved with mode 0600, read back, corrupt is an actionable error', async (t) => {
  const dir = await tempDir(t);
  assert.equal(await loadIdentity(dir), undefined);
  await saveIdentity(dir, { nodeId: 'n1', credential: 's3cret', masterAddress: '127.0.0.1:1', registeredAt: 5 });
  assert.equal((await stat(identityPath(dir))).mode & 0o777, 0o600);
  assert.deepEqual(await loadIdentity(dir), { nodeId: 'n1', credential: 's3cret', masterAddress: '127.0.0.1:1', registeredAt: 5 });
  const { writeFile } = await import('node:fs/promises');
  await writeFile(identityPath(dir), '{"nodeId": "n1"}');
  await assert.rejects(loadIdentity(dir), /lacks nodeId or credential; delete it/);
  await writeFile(identityPath(dir), 'not json');
  await assert.rejects(loadIdentity(dir), /not valid JSON/);
});

test('history pages walk 10,000 tasks newest first by keyset, filtered by state, without repeats', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  const N = 10_000;
  const finals = [TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED];
  for (let i = 0; i < N; i++) {
    const id = `t${String(i).padStart(5, '0')}`;
    // Several tasks share a creation time: the cursor must still be exact.
    store.insertTask(assignment(id), [], 1_000 + Math.floor(i / 3));
    if (i < N - 2) store.appendUpdate({ taskId: id, attempt: 1, state: finals[i % 3]!, message: '', atMs: 2_000 + i });
  }
  const seen = new Set<string>();
  let before: string | undefined;
  let pages = 0;
  let last = Infinity;
  for (;;) {
    const page = store.historyPage({ limit: 200, ...(before ? { before } : {}) });
    pages++;
    for (const r of page.tasks) {
      assert.ok(!seen.has(r.taskId), `${r.taskId} seen twice`);
      assert.ok(r.createdAt <= last, 'newest first');
      last = r.createdAt;
      seen.add(r.taskId);
    }
    if (!page.nextBefore) break;
    before = page.nextBefore;
  }
  assert.equal(seen.size, N);
  assert.equal(pages, N / 200);
  const failed = store.historyPage({ filter: 'failed', limit: 50 });
  assert.equal(failed.tasks.length, 50);
  assert.ok(failed.tasks.every((r) => r.state === TaskState.TASK_STATE_FAILED));
  assert.deepEqual(store.historyPage({ filter: 'running', limit: 50 }).tasks.map((r) => r.taskId), ['t09999', 't09998']);
  // The deep page uses the index: the plan is a search, never a scan of the table plus a sort.
  const db = new BetterSqlite3(path.join(dir, 'worker.db'), { readonly: true });
  t.after(() => db.close());
  const plan = (db.prepare(`EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE (created_at, task_id, attempt) < (?, ?, ?) ORDER BY created_at DESC, task_id DESC, attempt DESC LIMIT 51`).all(5000, 'x', 1) as { detail: string }[]).map((r) => r.detail).join('; ');
  assert.match(plan, /USING INDEX tasks_created/);
  assert.doesNotMatch(plan, /TEMP B-TREE/);
  assert.throws(() => store.historyPage({ limit: 5, before: 'not-a-cursor' }), /not a history cursor/);
});

test('contribution points keep a running total across reopening', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  let store = WorkerStore.open(file);
  const point = (atMs: number, score: number) => ({ atMs, intervalMs: 30_000, score, multiplier: 1, cpuPercent: 30, memoryPercent: 30, gpuPercent: 0 });
  assert.equal(store.contributionTotal(), 0);
  assert.equal(store.addContribution(point(1_000, 8)).total, 8);
  assert.equal(store.addContribution(point(31_000, 12)).total, 20);
  store.close();
  store = WorkerStore.open(file);
  t.after(() => store.close());
  assert.equal(store.addContribution(point(61_000, 10.5)).total, 30.5);
  assert.deepEqual(store.contributions(30_000).map((p) => p.score), [12, 10.5]);
  assert.equal(store.lastContribution()?.total, 30.5);
  // Old points are trimmed after the retention period; the total survives in the newest row.
  const later = 61_000 + 31 * 24 * 3600_000;
  assert.equal(store.addContribution(point(later, 1)).total, 31.5);
  assert.deepEqual(store.contributions(0).map((p) => p.atMs), [later]);
  assert.equal(store.contributionTotal(), 31.5);
});

test('pulled images: only pulls are tracked, uses move last-used forward, records survive reopening', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  let store = WorkerStore.open(file);
  store.recordImagePulled('alpine:3.20', 1_000);
  store.recordImagePulled('debian:12', 2_000);
  assert.equal(store.recordImageUsed('alpine:3.20', 5_000), true);
  // A use older than the last one (tasks finishing out of order) never moves it back.
  assert.equal(store.recordImageUsed('alpine:3.20', 4_000), true);
  // The operator's own image: used by a task, never pulled here, never recorded.
  assert.equal(store.recordImageUsed('operator/own:1', 6_000), false);
  store.close();

  store = WorkerStore.open(file);
  t.after(() => store.close());
  assert.deepEqual(store.pulledImages(), [
    { image: 'debian:12', pulledAt: 2_000, lastUsedAt: 2_000 },
    { image: 'alpine:3.20', pulledAt: 1_000, lastUsedAt: 5_000 },
  ]);
  // Pulled again after it vanished: the record moves forward, not duplicated.
  store.recordImagePulled('debian:12', 9_000);
  assert.deepEqual(store.pulledImages().map((r) => [r.image, r.pulledAt, r.lastUsedAt]), [
    ['alpine:3.20', 1_000, 5_000],
    ['debian:12', 9_000, 9_000],
  ]);
  store.forgetImage('alpine:3.20');
  store.forgetImage('never-recorded:1');
  assert.deepEqual(store.pulledImages().map((r) => r.image), ['debian:12']);
});

test('unfinished task images: the images of tasks not yet terminal, each once', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'worker.db'));
  t.after(() => store.close());
  const withImage = (taskId: string, image: string): TaskAssignment => ({ ...assignment(taskId), spec: { ...assignment(taskId).spec!, image } });
  store.insertTask(withImage('a', 'alpine:3.20'), [], 1);
  store.insertTask(withImage('b', 'alpine:3.20'), [], 2);
  store.insertTask(withImage('c', 'debian:12'), [], 3);
  store.insertTask(withImage('d', 'python:3.12'), [], 4);
  store.appendUpdate({ taskId: 'c', attempt: 1, state: TaskState.TASK_STATE_RUNNING, message: '', atMs: 5 });
  store.appendUpdate({ taskId: 'd', attempt: 1, state: TaskState.TASK_STATE_SUCCEEDED, message: '', atMs: 6 });
  assert.deepEqual(store.unfinishedTaskImages().sort(), ['alpine:3.20', 'debian:12']);
});

test('a version-2 database gains the pulled-images table and keeps its tasks', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  const raw = new BetterSqlite3(file);
  raw.exec(MIGRATIONS[0]!);
  raw.exec(MIGRATIONS[1]!);
  raw.pragma('user_version = 2');
  raw.prepare(`INSERT INTO tasks (task_id, attempt, spec, state, created_at, updated_at) VALUES ('old', 1, ?, 'TASK_STATE_RUNNING', 1, 1)`)
    // Written as workers before env became a Map did: the assignment object as JSON, env a plain object.
    .run(JSON.stringify({ ...assignment('old'), spec: { ...assignment('old').spec, env: { A: '1' } } }));
  raw.close();
  const store = WorkerStore.open(file);
  t.after(() => store.close());
  assert.equal(store.schemaVersion, MIGRATIONS.length);
  assert.equal(store.getTask('old', 1)?.state, TaskState.TASK_STATE_RUNNING);
  assert.deepEqual(store.getTask('old', 1)?.assignment, { ...assignment('old'), spec: { ...assignment('old').spec, env: new Map([['A', '1']]) } });
  assert.deepEqual(store.pulledImages(), []);
  assert.deepEqual(store.unfinishedTaskImages(), ['busybox']);
});

test("a progress update: its metrics survive the outbox's JSON row, the task keeps the last one, and no transition is recorded", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'worker.db');
  let store = WorkerStore.open(file);
  store.insertTask(assignment('t1'), [], 100);
  store.appendUpdate({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_RUNNING, message: '', atMs: 101 });
  const progress = TaskProgress.fromPartial({ fraction: 0.5, message: 'half', metrics: new Map([['loss', 0.25], ['__proto__', 1]]), atMs: 102, updates: 7, rejected: 1 });
  store.appendUpdate({ taskId: 't1', attempt: 1, state: TaskState.TASK_STATE_RUNNING, message: '', atMs: 102, progress });
  store.close();
  store = WorkerStore.open(file);
  t.after(() => store.close());
  const sent = store.outbox().map((e) => e.update.progress);
  assert.equal(sent[0], undefined);
  assert.deepEqual(sent[1], progress);
  assert.deepEqual([...sent[1]!.metrics.keys()], ['loss', '__proto__']);
  assert.deepEqual(store.getTask('t1', 1)!.progress, progress);
  assert.deepEqual(store.taskEvents('t1', 1).map((e) => e.seq), [1], 'a progress report is not a transition');
});

test('exec sessions: recorded with their end, a hostile command cut to a bounded size, only the newest EXEC_HISTORY_KEEP kept', async (t) => {
  const dir = await tempDir(t);
  const store = WorkerStore.open(path.join(dir, 'w.db'));
  t.after(() => store.close());
  const long = Array.from({ length: 64 }, () => 'x'.repeat(128));
  store.insertExecSession({ sessionId: 's0', taskId: 't1', attempt: 1, startedAt: 1, command: long, tty: true });
  store.endExecSession('s0', { endedAt: 2, exitCode: 137, error: 'e'.repeat(5_000) });
  const [row] = store.execSessions('t1');
  assert.ok(JSON.stringify(row!.command).length <= EXEC_HISTORY_COMMAND_CHARS, 'the command is cut');
  assert.equal(row!.command.at(-1), '…');
  assert.equal(row!.command[0], 'x'.repeat(128), 'whole arguments kept while they fit');
  assert.equal(row!.error.length, 1024);
  assert.deepEqual([row!.endedAt, row!.exitCode, row!.tty], [2, 137, true]);
  for (let i = 1; i <= EXEC_HISTORY_KEEP; i++) store.insertExecSession({ sessionId: `s${i}`, taskId: 't2', attempt: 1, startedAt: 10 + i, command: ['sh'], tty: false });
  assert.equal(store.execSessions('t1').length, 0, 'the oldest went');
  assert.equal(store.execSessions('t2', 1).length, EXEC_HISTORY_KEEP);
});
