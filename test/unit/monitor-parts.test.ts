// The monitor's pure parts: the contribution formula, the throttled log relay, the security
// guards and the live task table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { contributionScore, scoreReport, usageMultiplier } from '../../src/worker/contribution.js';
import { LogRelay } from '../../src/monitor/log-relay.js';
import { checkMonitorBinding, createGuard } from '../../src/monitor/monitor-security.js';
import { isLoopbackHost } from '../../src/common/address.js';
import { LiveTasks } from '../../src/monitor/live-tasks.js';
import { BadRequest, answerRequestError } from '../../src/monitor/request-errors.js';
import type { LogPush } from '../../src/monitor/monitor-types.js';
import { ResourceReport, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskRecord } from '../../src/worker/store/worker-store.js';
import { ConfigError } from '../../src/common/errors.js';

test('contribution: multiplier thresholds at 20 / 50 / 80 % and GPU points', () => {
  assert.deepEqual([0, 19.99, 20, 49.99, 50, 79.99, 80, 100].map(usageMultiplier), [0.8, 0.8, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5]);
  assert.deepEqual(contributionScore(10, 10, 0), { score: 8, multiplier: 0.8 });
  assert.deepEqual(contributionScore(60, 40, 0), { score: 12, multiplier: 1.2 }); // average exactly 50 %
  assert.deepEqual(contributionScore(30, 30, 200), { score: 12, multiplier: 1.0 }); // 10 + 200 x 0.01
});

test('contribution: a report is scored from CPU, memory share and summed GPU utilisation', () => {
  const r = ResourceReport.fromPartial({
    cpuPercent: 90,
    memoryUsedBytes: 80,
    memoryTotalBytes: 100,
    gpus: [{ index: 0, utilizationPercent: 50 }, { index: 1, utilizationPercent: 100 }],
  });
  const p = scoreReport(r, 1000, 30_000);
  assert.equal(p.multiplier, 1.5); // (90 + 80) / 2 = 85 %
  assert.equal(p.memoryPercent, 80);
  assert.equal(p.gpuPercent, 150);
  assert.equal(p.score, 10 * 1.5 + 150 * 0.01);
  // Garbage in (NaN, over 100 %) is clamped rather than inflating the score.
  const odd = scoreReport(ResourceReport.fromPartial({ cpuPercent: Number.NaN, memoryUsedBytes: 5, memoryTotalBytes: 0, gpus: [{ utilizationPercent: 400 }] }), 0, 1);
  assert.deepEqual([odd.cpuPercent, odd.memoryPercent, odd.gpuPercent, odd.multiplier], [0, 0, 100, 0.8]);
});

function relay(opts: Partial<{ flushMs: number; maxBatchBytes: number; tailBytes: number }> = {}) {
  const pushes: LogPush[] = [];
  const r = new LogRelay({ flushMs: 20, maxBatchBytes: 1024, tailBytes: 2048, ...opts, emit: (p) => pushes.push(p) });
  return { r, pushes };
}
const tick = (ms: number) => new Promise((res) => setTimeout(res, ms));

test('log relay: output is batched, not pushed per write', async () => {
  const { r, pushes } = relay();
  for (let i = 0; i < 10; i++) r.push('t1', 1, Buffer.from(`line ${i}\n`));
  assert.equal(pushes.length, 0);
  await tick(40);
  assert.equal(pushes.length, 1);
  assert.equal(pushes[0]!.text.split('\n').filter(Boolean).length, 10);
  assert.equal(pushes[0]!.dropped, 0);
  r.close();
});

test('log relay: a flood keeps the newest output, whole lines, and counts what it skipped', async () => {
  const { r, pushes } = relay();
  let written = 0;
  for (let i = 0; i < 5000; i++) {
    const line = Buffer.from(`line ${String(i).padStart(5, '0')}\n`);
    written += line.length;
    r.push('t1', 1, line);
  }
  await tick(40);
  assert.equal(pushes.length, 1);
  const p = pushes[0]!;
  assert.ok(Buffer.byteLength(p.text) <= 1024, `batch capped: ${Buffer.byteLength(p.text)}`);
  assert.ok(p.text.endsWith('line 04999\n'), 'the newest line is there');
  assert.ok(/^line \d{5}\n/.test(p.text), 'starts on a line boundary');
  assert.equal(p.dropped + Buffer.byteLength(p.text), written);
  // The tail for a new follower is bounded too and ends with the newest line.
  const tail = r.tail('t1')!;
  assert.ok(Buffer.byteLength(tail.text) <= 2048 && tail.text.endsWith('line 04999\n'));
  r.close();
});

test('log relay: finish() pushes what is pending at once; a new attempt starts clean', async () => {
  const { r, pushes } = relay({ flushMs: 10_000 });
  r.push('t1', 1, Buffer.from('last words\n'));
  r.finish('t1');
  assert.deepEqual(pushes.map((p) => p.text), ['last words\n']);
  assert.equal(r.tail('t1'), undefined);
  r.push('t1', 2, Buffer.from('second attempt\n'));
  assert.deepEqual(r.tail('t1'), { attempt: 2, text: '' }, 'nothing pushed yet for attempt 2');
  r.close();
});

test('log relay: a page that starts following between two pushes sees every line once', async () => {
  const { r, pushes } = relay({ flushMs: 30 });
  r.push('t1', 1, Buffer.from('one\n'));
  await tick(50);
  r.push('t1', 1, Buffer.from('two\n'));
  // The page joins now: it gets the tail, then the pushes that follow.
  const seen = [r.tail('t1')!.text];
  const from = pushes.length;
  await tick(50);
  r.push('t1', 1, Buffer.from('three\n'));
  await tick(50);
  seen.push(...pushes.slice(from).map((p) => p.text));
  assert.equal(seen.join(''), 'one\ntwo\nthree\n');
  r.close();
});

test('monitor binding: loopback is fine without a token, anything else needs one of 16+ characters', () => {
  for (const h of ['127.0.0.1', 'localhost', '::1', '127.1.2.3']) assert.ok(isLoopbackHost(h), h);
  checkMonitorBinding('127.0.0.1', undefined);
  assert.throws(() => checkMonitorBinding('0.0.0.0', undefined), (e: unknown) => e instanceof ConfigError && /monitor token/.test(e.message));
  assert.throws(() => checkMonitorBinding('192.168.1.5', 'short'), /at least 16/);
  checkMonitorBinding('0.0.0.0', 'a'.repeat(16));
});

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

test('monitor guard: Host must be this server (DNS rebinding), token when set, controls same-origin only', () => {
  const open = createGuard({ port: () => 5001, token: undefined, listenHost: '127.0.0.1' });
  assert.equal(open.refuse(req({ host: 'localhost:5001' })), undefined);
  assert.equal(open.refuse(req({ host: '127.0.0.1:5001' })), undefined);
  assert.equal(open.refuse(req({ host: 'evil.example:5001' }))?.status, 421);
  assert.equal(open.refuse(req({ host: 'localhost:5002' }))?.status, 421);
  assert.equal(open.refuse(req({}))?.status, 421);

  assert.match(open.refuseControl(req({ host: 'localhost:5001' }))!, /x-hivemind-monitor/);
  assert.equal(open.refuseControl(req({ host: 'localhost:5001', 'x-hivemind-monitor': '1' })), undefined);
  assert.equal(open.refuseControl(req({ host: 'localhost:5001', 'x-hivemind-monitor': '1', origin: 'http://localhost:5001' })), undefined);
  assert.match(open.refuseControl(req({ host: 'localhost:5001', 'x-hivemind-monitor': '1', origin: 'http://evil.example' }))!, /cross-site/);
  assert.match(open.refuseControl(req({ host: 'localhost:5001', 'x-hivemind-monitor': '1', origin: 'null' }))!, /cross-site/);

  const token = 'x'.repeat(20);
  const locked = createGuard({ port: () => 5001, token, listenHost: '0.0.0.0' });
  assert.equal(locked.refuse(req({ host: '10.0.0.5:5001' }))?.status, 401);
  assert.equal(locked.refuse(req({ host: '10.0.0.5:5001', authorization: `Bearer ${token}` })), undefined);
  assert.equal(locked.refuse(req({ host: '10.0.0.5:5001', cookie: `a=b; hm_monitor=${token}` })), undefined);
  assert.equal(locked.refuse(req({ host: '10.0.0.5:5001', authorization: 'Bearer wrong' }))?.status, 401);
  assert.equal(locked.refuse(req({ host: '10.0.0.5:5001' }), { token }), undefined);
});

function record(taskId: string, state: TaskState): TaskRecord {
  return {
    taskId,
    attempt: 1,
    assignment: { taskId, attempt: 1, inputSize: 0, inputSha256: '', spec: { image: 'img', command: ['sh'], env: new Map([['SECRET', 'v']]), limits: { cpus: 1, memoryBytes: 64, pids: 10, gpus: 0, timeoutMs: 60_000 }, network: 0, maxOutputBytes: 0, data: [] } },
    state,
    gpuIndexes: [],
    logTail: '',
    createdAt: 100,
    updatedAt: 100,
  };
}

test('live tasks: follow state, progress and usage; leave on a terminal state', () => {
  const live = new LiveTasks((id) => record(id, TaskState.TASK_STATE_ACCEPTED));
  const u = (state: TaskState, atMs: number) => ({ taskId: 't1', attempt: 1, seq: 1, state, message: '', atMs, accepting: true });
  assert.equal(live.onUpdate(u(TaskState.TASK_STATE_ACCEPTED, 100)), true);
  live.onProgress({ taskId: 't1', attempt: 1, kind: 'pull', currentBytes: 5, totalBytes: 10 });
  assert.deepEqual(live.list()[0]!.pull, { currentBytes: 5, totalBytes: 10 });
  live.onUpdate(u(TaskState.TASK_STATE_RUNNING, 150));
  live.onReport(ResourceReport.fromPartial({ tasks: [{ taskId: 't1', cpuPercent: 50, memoryBytes: 1000 }] }));
  const v = live.list()[0]!;
  assert.equal(v.state, 'running');
  assert.equal(v.startedAtMs, 150);
  assert.equal(v.pull, null);
  assert.deepEqual(v.usage, { cpuPercent: 50, memoryBytes: 1000 });
  assert.deepEqual(v.limits, { cpus: 1, memoryBytes: 64, pids: 10, gpus: 0, timeoutMs: 60_000 });
  assert.ok(!('env' in v), 'env (maybe secrets) is not in the running view');
  live.onUpdate(u(TaskState.TASK_STATE_UPLOADING, 200));
  live.onProgress({ taskId: 't1', attempt: 1, kind: 'upload', currentBytes: 7, totalBytes: 7 });
  assert.deepEqual(live.list()[0]!.upload, { currentBytes: 7, totalBytes: 7 });
  assert.equal(live.onUpdate(u(TaskState.TASK_STATE_SUCCEEDED, 300)), true);
  assert.deepEqual(live.list(), []);
  assert.equal(live.has('t1'), false);
});

test('monitor request errors: hostile paths are 404/400 at debug, only the monitor\'s own failures are 500s', () => {
  const httpError = (status: number, message: string) => Object.assign(new Error(message), { status, expose: true });
  assert.deepEqual(answerRequestError(httpError(403, 'Forbidden')), { status: 404, message: 'not found', logLevel: 'debug' });
  assert.deepEqual(answerRequestError(httpError(404, 'Not Found')), { status: 404, message: 'not found', logLevel: 'debug' });
  assert.deepEqual(answerRequestError(httpError(400, "Failed to decode param '%E0%A4%A'")), { status: 400, message: 'bad request', logLevel: 'debug' });
  assert.deepEqual(answerRequestError(Object.assign(new Error('x'), { statusCode: 413 })), { status: 400, message: 'bad request', logLevel: 'debug' });
  assert.deepEqual(answerRequestError(new BadRequest('limit must be an integer from 1 to 200')), { status: 400, message: 'limit must be an integer from 1 to 200', logLevel: 'debug' });
  assert.equal(answerRequestError(new Error('database is locked')).status, 500);
  assert.equal(answerRequestError(new Error('database is locked')).logLevel, 'error');
  assert.equal(answerRequestError(httpError(503, 'x')).status, 500);
  assert.equal(answerRequestError(undefined).status, 500);
});
