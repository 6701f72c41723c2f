// A task's own progress lines (docs/progress.md): how the node finds and checks them in its output,
// how often the master hears them, how the master checks a node's forwarding, and what the CLI shows.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressScanner } from '../../src/worker/progress-scanner.js';
import { TaskProgressReporter, progressOf, progressSendDelay } from '../../src/worker/task-progress-reporter.js';
import { MAX_PROGRESS_LINE_BYTES, parseProgressJson, progressViolation } from '../../src/protocol/progress-rules.js';
import { screenProgress } from '../../src/master/node-input-validation.js';
import { TaskProgress, TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { LiveTasks } from '../../src/monitor/live-tasks.js';
import { MonitorMetrics } from '../../src/monitor/monitor-metrics.js';
import { taskRowView } from '../../src/monitor/monitor-view.js';
import type { TaskRecord } from '../../src/worker/contracts.js';
import { taskFromRaw, taskToParams, type RawTask, type TaskRow } from '../../src/master/store-rows.js';
import { toTaskInfo } from '../../src/master/task-info.js';
import { TaskUpdate } from '../../src/protocol/gen/hivemind/v1/node.js';
import { TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { describeProgress, describeProgressDetail, liveTaskLine, progressCell } from '../../src/cli/task-progress.js';
import { formatTask, formatTaskTable, stateName } from '../../src/cli/task-format.js';

function scan(...chunks: (string | Buffer)[]): ProgressScanner {
  const s = new ProgressScanner(() => 1234);
  for (const c of chunks) s.push('stdout', typeof c === 'string' ? Buffer.from(c) : c);
  return s;
}

test('a good line is read whole: fraction, message, metrics; unknown keys ignored; the time it was read', () => {
  const s = scan('starting\nHIVEMIND_PROGRESS {"fraction": 0.42, "message": "epoch 3/10", "metrics": {"loss": 0.31, "lr": 1e-4}, "eta": "soon"}\ndone\n');
  assert.equal(s.updates, 1);
  assert.equal(s.rejected, 0);
  assert.deepEqual(s.latest, { atMs: 1234, report: { fraction: 0.42, message: 'epoch 3/10', metrics: new Map([['loss', 0.31], ['lr', 1e-4]]) } });
});

test('a fraction, a message or metrics alone is a report; the latest wins; a tab separates too', () => {
  const s = scan('HIVEMIND_PROGRESS {"fraction": 0}\n', 'HIVEMIND_PROGRESS\t{"message": "loading"}\n', 'HIVEMIND_PROGRESS {"metrics": {"a.b:c/d-e_f": 1}}\n');
  assert.equal(s.updates, 3);
  assert.equal(s.rejected, 0);
  assert.deepEqual(s.latest?.report, { message: '', metrics: new Map([['a.b:c/d-e_f', 1]]) });
});

test('a line split across chunks anywhere (in the prefix, in the JSON) and a CRLF line end are read', () => {
  const line = 'HIVEMIND_PROGRESS {"fraction": 0.5, "message": "half"}\r\n';
  for (let cut = 1; cut < line.length; cut++) {
    const s = scan('x\nHIVE'.slice(0, 2), line.slice(0, cut), line.slice(cut));
    assert.equal(s.updates, 1, `cut at ${cut}`);
    assert.equal(s.rejected, 0, `cut at ${cut}`);
    assert.equal(s.latest?.report.fraction, 0.5);
    assert.equal(s.latest?.report.message, 'half');
  }
});

test('stdout and stderr keep their own line: one stream cannot finish the other\'s line', () => {
  const s = new ProgressScanner(() => 0);
  s.push('stdout', Buffer.from('HIVEMIND_PROGRESS {"fract'));
  s.push('stderr', Buffer.from('HIVEMIND_PROGRESS {"fraction": 0.2}\n'));
  s.push('stdout', Buffer.from('ion": 0.7}\n'));
  assert.equal(s.updates, 2);
  assert.equal(s.rejected, 0);
  assert.equal(s.latest?.report.fraction, 0.7);
});

test('the prefix mid-line, indented, or glued to a longer word is not a progress line (not counted)', () => {
  const s = scan('log: HIVEMIND_PROGRESS {"fraction": 1}\n', '  HIVEMIND_PROGRESS {"fraction": 1}\n', 'HIVEMIND_PROGRESSX {"fraction": 1}\n', 'HIVEMIND_PROGRESS_V2 {}\n', 'HIVEMIND\n');
  assert.equal(s.updates, 0);
  assert.equal(s.latest, undefined);
});

test('every malformed kind is counted as refused and leaves the latest good report alone', () => {
  const bad = [
    'HIVEMIND_PROGRESS',
    'HIVEMIND_PROGRESS ',
    'HIVEMIND_PROGRESS {"fraction": 0.5',
    'HIVEMIND_PROGRESS [0.5]',
    'HIVEMIND_PROGRESS "half"',
    'HIVEMIND_PROGRESS null',
    'HIVEMIND_PROGRESS {"fraction": NaN}',
    'HIVEMIND_PROGRESS {"fraction": Infinity}',
    'HIVEMIND_PROGRESS {"fraction": 1e999}',
    'HIVEMIND_PROGRESS {"fraction": 1.5}',
    'HIVEMIND_PROGRESS {"fraction": -0.1}',
    'HIVEMIND_PROGRESS {"fraction": "0.5"}',
    'HIVEMIND_PROGRESS {"message": 7}',
    `HIVEMIND_PROGRESS {"message": "${'m'.repeat(257)}"}`,
    'HIVEMIND_PROGRESS {"metrics": [1, 2]}',
    'HIVEMIND_PROGRESS {"metrics": {"loss": "low"}}',
    'HIVEMIND_PROGRESS {"metrics": {"loss": 1e999}}',
    'HIVEMIND_PROGRESS {"metrics": {"bad name": 1}}',
    `HIVEMIND_PROGRESS {"metrics": {"${'n'.repeat(65)}": 1}}`,
    `HIVEMIND_PROGRESS {"metrics": {${Array.from({ length: 17 }, (_, i) => `"m${i}": ${i}`).join(', ')}}}`,
  ];
  const s = scan('HIVEMIND_PROGRESS {"fraction": 0.25, "message": "good"}\n', bad.join('\n') + '\n');
  assert.equal(s.updates, 1 + bad.length);
  assert.equal(s.rejected, bad.length);
  assert.deepEqual(s.latest?.report, { fraction: 0.25, message: 'good', metrics: new Map() });
});

test('a line over 4 KiB is refused when it starts with the prefix, ignored otherwise, and the node keeps no more than the bound', () => {
  const pad = 'x'.repeat(MAX_PROGRESS_LINE_BYTES);
  const huge = `HIVEMIND_PROGRESS {"message": "${pad}"}\n`;
  const s = new ProgressScanner(() => 0);
  // Fed in small pieces, as a stream delivers it: the buffer never holds more than the bound.
  for (let i = 0; i < huge.length; i += 100) s.push('stdout', Buffer.from(huge.slice(i, i + 100)));
  s.push('stdout', Buffer.from(`${pad}${pad}\nHIVEMIND_PROGRESS {"fraction": 0.9}\n`));
  assert.equal(s.updates, 2);
  assert.equal(s.rejected, 1);
  assert.equal(s.latest?.report.fraction, 0.9);
  // At the bound exactly (plus a CR) a line still counts.
  const fill = MAX_PROGRESS_LINE_BYTES - 'HIVEMIND_PROGRESS {"message": ""}'.length;
  const edge = scan(`HIVEMIND_PROGRESS {"message": "${'y'.repeat(Math.min(fill, 256))}"}${' '.repeat(Math.max(0, fill - 256))}\r\n`);
  assert.equal(edge.rejected, 0);
  assert.equal(edge.updates, 1);
});

test("a message's control characters become spaces; the master refuses them from a node", () => {
  const r = parseProgressJson('{"message": "a\\tb\\u001b[2Jc\\u0085d"}');
  assert.ok(r.ok);
  assert.equal(r.ok && r.report.message, 'a b [2Jc d');
  const p = TaskProgress.fromPartial({ message: 'a\u001b[2Jb', updates: 1 });
  assert.match(progressViolation(p) ?? '', /control characters/);
});

test('the master checks a forwarded report by the same bounds, drops only the report, and keeps the rest', () => {
  const good = TaskProgress.fromPartial({ fraction: 0.5, message: 'ok', metrics: new Map([['loss', 1]]), atMs: 5, updates: 3, rejected: 1 });
  assert.equal(progressViolation(good), undefined);
  const cases: [Partial<TaskProgress>, RegExp][] = [
    [{ fraction: Number.NaN }, /fraction/],
    [{ fraction: 2 }, /fraction/],
    [{ message: 'm'.repeat(257) }, /over 256/],
    [{ metrics: new Map(Array.from({ length: 1000 }, (_, i) => [`m${i}`, i])) }, /1000 metrics/],
    [{ metrics: new Map([['x', Number.POSITIVE_INFINITY]]) }, /finite/],
    [{ metrics: new Map([['a b', 1]]) }, /name/],
    [{ updates: 1, rejected: 2 }, /more than/],
    [{ updates: -1 }, /count/],
  ];
  for (const [bad, why] of cases) {
    const u = TaskUpdate.fromPartial({ taskId: 't', attempt: 1, seq: 4, state: TaskState.TASK_STATE_RUNNING, message: 'm', progress: { ...good, ...bad } });
    const s = screenProgress(u);
    assert.match(s.refused ?? '', why);
    assert.equal(s.update.progress, undefined);
    assert.equal(s.update.seq, 4);
    assert.equal(s.update.state, TaskState.TASK_STATE_RUNNING);
  }
  const u = TaskUpdate.fromPartial({ taskId: 't', progress: good });
  assert.equal(screenProgress(u).update, u);
  assert.equal(screenProgress(u).refused, undefined);
});

test('progressSendDelay: the first at once, then no sooner than a second after the last', () => {
  assert.equal(progressSendDelay(undefined, 5000), 0);
  assert.equal(progressSendDelay(5000, 5300), 700);
  assert.equal(progressSendDelay(5000, 6000), 0);
  assert.equal(progressSendDelay(5000, 9000), 0);
});

test('the reporter sends the first report at once, then the latest at most once a second, the pending one on finish, and nothing after', (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 10_000 });
  t.after(() => mock.timers.reset());
  const sent: TaskProgress[] = [];
  const r = new TaskProgressReporter({ clock: { now: () => Date.now() }, send: (p) => sent.push(p) });
  const line = (f: number) => Buffer.from(`HIVEMIND_PROGRESS {"fraction": ${f}}\n`);
  r.push('stdout', line(0.1));
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.fraction, 0.1);
  for (let i = 2; i <= 500; i++) r.push('stdout', line(i / 1000));
  r.push('stderr', Buffer.from('HIVEMIND_PROGRESS {oops}\n'));
  assert.equal(sent.length, 1, 'nothing more within the second');
  mock.timers.tick(999);
  assert.equal(sent.length, 1);
  mock.timers.tick(1);
  assert.equal(sent.length, 2);
  assert.deepEqual({ fraction: sent[1]!.fraction, updates: sent[1]!.updates, rejected: sent[1]!.rejected, atMs: sent[1]!.atMs }, { fraction: 0.5, updates: 501, rejected: 1, atMs: 10_000 });
  // Quiet: no timer, nothing resent.
  mock.timers.tick(5000);
  assert.equal(sent.length, 2);
  // A line after a quiet spell goes at once; one in the next second waits and is dropped by stop().
  r.push('stdout', line(0.6));
  assert.equal(sent.length, 3);
  r.push('stdout', line(0.7));
  r.finish();
  assert.equal(sent.length, 4, 'finish sends the pending latest at once');
  assert.equal(sent[3]!.fraction, 0.7);
  r.finish();
  r.push('stdout', line(0.75));
  r.stop();
  mock.timers.tick(2000);
  r.push('stdout', line(0.8));
  assert.equal(sent.length, 4);
});

test('progressOf: counts with no good report yet give an empty report that says so', () => {
  const s = scan('HIVEMIND_PROGRESS nope\n');
  const p = progressOf(s);
  assert.deepEqual({ ...p, metrics: [...p.metrics] }, { message: '', metrics: [], atMs: 0, updates: 1, rejected: 1 });
  assert.equal(describeProgress(p), 'no valid progress line yet');
});

test('the CLI shows a bar, percent, message and metrics; a PROGRESS column; a live line while running; hostile text escaped', () => {
  const p = TaskProgress.fromPartial({ fraction: 0.42, message: 'epoch 3/10', metrics: new Map([['loss', 0.312345678], ['step', 300]]), updates: 10, rejected: 2 });
  assert.equal(describeProgress(p, 10), '[####......]  42%  epoch 3/10  loss=0.312346 step=300');
  assert.match(describeProgressDetail(p), /\(2 of 10 progress lines refused/);
  const running = TaskInfo.fromPartial({ taskId: 'T1', state: TaskState.TASK_STATE_RUNNING, attempt: 1, progress: p });
  assert.equal(progressCell(running), '42%');
  assert.equal(progressCell(TaskInfo.fromPartial({ taskId: 'T2' })), '-');
  assert.equal(progressCell(TaskInfo.fromPartial({ progress: { message: 'x' } })), '-');
  const table = formatTaskTable([running]).split('\n');
  assert.match(table[0]!, /ATTEMPT\s+PROGRESS\s+OUTCOME/);
  assert.match(table[1]!, /\s42%/);
  assert.match(formatTask(running), /^progress {2}\[#{8}\.{12}\] {2}42% {2}epoch 3\/10/m);
  assert.match(liveTaskLine(running, stateName), /^T1 running {2}\[/);
  assert.equal(liveTaskLine({ ...running, state: TaskState.TASK_STATE_PULLING }, stateName), 'T1 pulling');
  const hostile = TaskProgress.fromPartial({ message: 'a\u202eb\u001b[2J' });
  assert.doesNotMatch(describeProgress(hostile), /[\u202e\u001b]/);
});

test("the node's monitor: a running task's progress in its live view, the last one in history, and in /metrics", async () => {
  const rec = (state: TaskState, progress?: TaskProgress): TaskRecord => ({
    taskId: 't1',
    attempt: 1,
    assignment: { taskId: 't1', attempt: 1, inputSize: 0, inputSha256: '', spec: TaskSpec.fromPartial({ image: 'img', command: ['sh'] }) },
    state,
    gpuIndexes: [],
    logTail: '',
    createdAt: 100,
    updatedAt: 100,
    ...(progress ? { progress } : {}),
  });
  const p = (fraction: number | undefined, updates: number, rejected: number) => TaskProgress.fromPartial({ ...(fraction !== undefined ? { fraction } : {}), message: 'step', metrics: new Map([['loss', 0.5]]), atMs: 7, updates, rejected });
  const u = (state: TaskState, progress?: TaskProgress) => TaskUpdate.fromPartial({ taskId: 't1', attempt: 1, seq: 1, state, atMs: 150, ...(progress ? { progress } : {}) });
  const live = new LiveTasks(() => rec(TaskState.TASK_STATE_RUNNING));
  const metrics = new MonitorMetrics(() => 0, () => 1, () => true);
  for (const update of [u(TaskState.TASK_STATE_RUNNING), u(TaskState.TASK_STATE_RUNNING, p(0.25, 10, 2)), u(TaskState.TASK_STATE_RUNNING, p(0.5, 30, 3))]) {
    live.onUpdate(update);
    metrics.onUpdate(update);
  }
  assert.deepEqual(live.list()[0]!.progress, { fraction: 0.5, message: 'step', metrics: { loss: 0.5 }, atMs: 7, updates: 30, rejected: 3 });
  let text = (await metrics.text()).body;
  assert.match(text, /^hivemind_task_progress_fraction\{task_id="t1"\} 0\.5$/m);
  assert.match(text, /^hivemind_worker_progress_lines_total 30$/m);
  assert.match(text, /^hivemind_worker_progress_lines_rejected_total 3$/m);
  metrics.onUpdate(u(TaskState.TASK_STATE_SUCCEEDED));
  text = (await metrics.text()).body;
  assert.doesNotMatch(text, /^hivemind_task_progress_fraction\{/m);
  assert.deepEqual(taskRowView(rec(TaskState.TASK_STATE_SUCCEEDED, p(undefined, 4, 0))).progress, { fraction: null, message: 'step', metrics: { loss: 0.5 }, atMs: 7, updates: 4, rejected: 0 });
});

test("the master's task row keeps a report's every metric through its SQLite row, and TaskInfo carries it", () => {
  const progress = TaskProgress.fromPartial({ fraction: 0.5, message: 'half', metrics: new Map([['loss', 0.25], ['__proto__', 2]]), atMs: 9, updates: 3, rejected: 1 });
  const row: TaskRow = {
    id: 't1', spec: TaskSpec.fromPartial({ image: 'img' }), state: TaskState.TASK_STATE_RUNNING, attempt: 1, maxAttempts: 3, nodeId: 'n1', queueReason: '',
    outcome: undefined, inputSize: 0, inputSha256: '', result: undefined, cancelRequested: false, cancelReason: '', createdAt: 1, updatedAt: 2,
    startedAt: 2, finishedAt: null, lastUpdateSeq: 4, excludedNodes: [], progress,
  };
  const back = taskFromRaw(taskToParams(row) as unknown as RawTask);
  assert.deepEqual(back.progress, progress);
  assert.deepEqual(toTaskInfo(back).progress, progress);
  assert.equal(taskFromRaw(taskToParams({ ...row, progress: undefined }) as unknown as RawTask).progress, undefined);
});
