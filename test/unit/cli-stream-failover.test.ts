// A CLI command that follows a task across masters (one store, one active, the others standby):
// the backoff and its bound, which errors move on, the log offset that keeps each byte printed
// once, and the FailoverClient's moves with fake masters, a fake pick and a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { MasterCallError } from '../../src/client/admin-client.js';
import { NoActiveMasterError } from '../../src/client/active-master.js';
import { DEFAULT_FAILOVER, FailoverExhaustedError, isMasterLoss, retryDelay, type FailoverPolicy } from '../../src/client/failover-policy.js';
import { LogResume } from '../../src/client/log-resume.js';
import { FailoverClient, type FollowClient } from '../../src/client/master-failover.js';
import { LiveLogQueue } from '../../src/master/log-stream.js';
import { LogStream, TaskState, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';
import { TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { printLogs, watchUntilEnd } from '../../src/cli/task-attach.js';
import { PassThrough } from 'node:stream';
import { recordHostile } from '../helpers/fault-ledger.js';

function grpcError(code: status, details: string): Error {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });
}
const unavailable = (why = 'Connection dropped') => new MasterCallError('logs of task t1', grpcError(status.UNAVAILABLE, why));
const chunk = (text: string, stream = LogStream.LOG_STREAM_UNSPECIFIED, atMs = 0): LogChunk => ({ taskId: 't1', attempt: 1, stream, data: Buffer.from(text), atMs });
const info = (state: TaskState) => TaskInfo.fromPartial({ taskId: 't1', state });

test('retryDelay: doubles from the first delay, capped, half random, never past the bound, then gives up', () => {
  const p: FailoverPolicy = { firstDelayMs: 100, maxDelayMs: 1000, boundMs: 5000 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => retryDelay(a, 0, p, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([0, 1, 4].map((a) => retryDelay(a, 0, p, () => 0)), [50, 100, 500]);
  assert.equal(retryDelay(4, 4800, p, () => 1), 200, 'cut at the bound');
  assert.equal(retryDelay(0, 5000, p), undefined);
  assert.equal(retryDelay(0, 9000, p), undefined);
  assert.ok(DEFAULT_FAILOVER.boundMs > 5000, 'the default outlasts the default lease');
});

test('isMasterLoss: UNAVAILABLE (dropped, refused, standby) moves on; any other answer is the command\'s own', () => {
  assert.equal(isMasterLoss(unavailable()), true);
  assert.equal(isMasterLoss(grpcError(status.UNAVAILABLE, 'standby master: b:1:x is active')), true);
  assert.equal(isMasterLoss(new MasterCallError('get task t1', grpcError(status.NOT_FOUND, 'no task t1'))), false);
  assert.equal(isMasterLoss(grpcError(status.PERMISSION_DENIED, 'bad token')), false);
  assert.equal(isMasterLoss(new Error('boom')), false);
  assert.equal(isMasterLoss(null), false);
});

test('LogResume: a stream opened again skips exactly the bytes printed, whatever its chunk boundaries', () => {
  const r = new LogResume();
  const out: string[] = [];
  const feed = (c: LogChunk) => {
    const part = r.take(c);
    if (part) out.push(Buffer.from(part.data).toString());
  };
  feed(chunk('hello '));
  feed(chunk('wor', LogStream.LOG_STREAM_STDOUT, 5));
  assert.equal(r.printedBytes, 9);
  r.restart();
  // The new master sends the stored log from its first byte, in other chunks.
  feed(chunk('hel'));
  feed(chunk('lo world\n'));
  feed(chunk('next', LogStream.LOG_STREAM_STDERR, 7));
  assert.equal(out.join(''), 'hello world\nnext');
  assert.equal(r.printedBytes, 16);
  r.restart();
  feed(chunk('hello world\nnext'));
  feed(chunk('!'));
  assert.equal(out.join(''), 'hello world\nnext!');
});

test('LogResume: the master\'s skipped-bytes note counts the bytes it stands for, not its own', () => {
  const q = new LiveLogQueue('t1', 1, 4);
  q.push(chunk('abcd', LogStream.LOG_STREAM_STDOUT, 1));
  q.push(chunk('efghij', LogStream.LOG_STREAM_STDOUT, 2));
  const r = new LogResume();
  const got: string[] = [];
  for (let c = q.shift(); c; c = q.shift()) got.push(Buffer.from(r.take(c)!.data).toString());
  assert.match(got[1]!, /6 bytes of live output skipped/);
  assert.equal(r.printedBytes, 10, 'abcd printed, efghij skipped by the master: the stored log\'s first 10 bytes');
  r.restart();
  const again = r.take(chunk('abcdefghijKL'));
  assert.equal(Buffer.from(again!.data).toString(), 'KL');
});

test('LogResume (hostile): a task printing the master\'s note only moves its own resume point; other text, another task\'s id and huge counts are output', () => {
  const forged = (n: string, id = 't1') => chunk(`\n[hivemind: ${n} bytes of live output skipped here: this reader fell behind; \`hivemind logs ${id}\` shows the stored log]\n`, LogStream.LOG_STREAM_STDERR, 3);
  const cases: [string, LogChunk, number][] = [
    ['another task\'s id', forged('5', 't2'), 0],
    ['a count past 15 digits', forged('9'.repeat(400)), 0],
    ['the note inside longer output', chunk(`x${Buffer.from(forged('5').data).toString()}`, LogStream.LOG_STREAM_STDERR, 3), 0],
    ['the note from the stored part (atMs 0)', { ...forged('5'), atMs: 0 }, 0],
    ['the exact note, as the task\'s own output', forged('5'), 5],
  ];
  for (const [name, c, extra] of cases) {
    const r = new LogResume();
    const part = r.take(c);
    const asOutput = extra === 0;
    const escaped = !part || r.printedBytes !== (asOutput ? c.data.length : extra);
    recordHostile(`cli log resume: forged skipped-bytes note, ${name}`, escaped);
    assert.ok(part, name);
    assert.equal(r.printedBytes, asOutput ? c.data.length : extra, name);
  }
});

/** A fake master: its log and watch follow a script; `fail` ends a stream with an error. */
type Step<T> = T | { fail: Error };
class FakeMaster implements FollowClient {
  closed = false;
  calls = 0;
  constructor(
    readonly name: string,
    private readonly script: { logs?: Step<LogChunk>[]; watch?: Step<TaskInfo>[]; task?: TaskInfo | Error } = {},
  ) {}
  async *play<T>(steps: Step<T>[] | undefined): AsyncGenerator<T> {
    this.calls++;
    for (const s of steps ?? []) {
      await Promise.resolve();
      if (s && typeof s === 'object' && 'fail' in s) throw s.fail;
      yield s as T;
    }
  }
  streamLogs = (): AsyncIterable<LogChunk> => this.play(this.script.logs);
  watchTask = (): AsyncIterable<TaskInfo> => this.play(this.script.watch);
  getTask = async (): Promise<TaskInfo> => {
    this.calls++;
    const t = this.script.task;
    if (t instanceof Error) throw t;
    return t ?? info(TaskState.TASK_STATE_RUNNING);
  };
  cancelTask = this.getTask;
  close(): void {
    this.closed = true;
  }
}

/** The FailoverClient over fake masters, a pick that answers from `picks` in turn, a clock moved by sleep. */
function harness(masters: string[], fakes: Record<string, FakeMaster>, picks: (string | Error)[], policy: FailoverPolicy = { firstDelayMs: 100, maxDelayMs: 400, boundMs: 2000 }) {
  let now = 0;
  const sleeps: number[] = [];
  const notes: string[] = [];
  const pickOrder = [...picks];
  const create = () =>
    FailoverClient.create({
      masters,
      pick: async () => {
        const p = pickOrder.length > 1 ? pickOrder.shift()! : pickOrder[0]!;
        if (p instanceof Error) throw p;
        return p;
      },
      connect: (a) => fakes[a]!,
      sleep: async (ms) => {
        sleeps.push(ms);
        now += ms;
      },
      now: () => now,
      policy,
      random: () => 1,
      onMove: (n) => notes.push(n),
    });
  return { create, sleeps, notes };
}

const standbyRefusal = (...addresses: string[]) =>
  new NoActiveMasterError(addresses.map((address) => ({ address, why: address === 'a' ? 'connect ECONNREFUSED' : 'standby master: a:1:x is active' })));

test('FailoverClient: a followed log cut by a killed master goes on on the standby once it took over, each byte printed once', async () => {
  const a = new FakeMaster('a', { logs: [chunk('line 1\n'), chunk('line 2\nli', LogStream.LOG_STREAM_STDOUT, 1), { fail: unavailable() }] });
  const b = new FakeMaster('b', { logs: [chunk('line 1\nline'), chunk(' 2\nline 3\n'), chunk('line 4\n', LogStream.LOG_STREAM_STDERR, 9)] });
  // a is dead; b is a standby for two picks, then active.
  const h = harness(['a', 'b'], { a, b }, ['a', standbyRefusal('a', 'b'), standbyRefusal('a', 'b'), 'b']);
  const client = await h.create();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  await printLogs(client.streamLogs('t1', { follow: true }), stdout, stderr);
  assert.equal(stdout.read()?.toString(), 'line 1\nline 2\nline 3\n');
  assert.equal(stderr.read()?.toString(), 'line 4\n');
  assert.equal(a.closed, true, 'the lost master\'s client is closed');
  assert.equal(client.master, 'b');
  assert.deepEqual(h.sleeps, [100, 200], 'the first pick at once, then backing off');
  assert.equal(h.notes.length, 1);
  assert.match(h.notes[0]!, /^logs of task t1: lost master a \(Connection dropped\); going on with b$/);
});

test('FailoverClient: a wait across a failover sees each state once and ends on the new master', async () => {
  const a = new FakeMaster('a', { watch: [info(TaskState.TASK_STATE_QUEUED), info(TaskState.TASK_STATE_RUNNING), { fail: unavailable('standby master: b:1:x is active') }] });
  const b = new FakeMaster('b', { watch: [info(TaskState.TASK_STATE_RUNNING), info(TaskState.TASK_STATE_SUCCEEDED)] });
  const h = harness(['a', 'b'], { a, b }, ['a', 'b']);
  const client = await h.create();
  const states: TaskState[] = [];
  const end = await watchUntilEnd(client, 't1', { onState: (t) => states.push(t.state) });
  assert.equal(end?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.deepEqual(states, [TaskState.TASK_STATE_QUEUED, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_SUCCEEDED]);
  assert.deepEqual(h.sleeps, []);
});

test('FailoverClient: a watch that ends before the task did (its master closing) moves on too', async () => {
  const a = new FakeMaster('a', { watch: [info(TaskState.TASK_STATE_RUNNING)] });
  const b = new FakeMaster('b', { watch: [info(TaskState.TASK_STATE_FAILED)] });
  const h = harness(['a', 'b'], { a, b }, ['a', 'b']);
  const end = await watchUntilEnd(await h.create(), 't1');
  assert.equal(end?.state, TaskState.TASK_STATE_FAILED);
  assert.match(h.notes[0]!, /the watch ended before the task did/);
});

test('FailoverClient: no active master within the bound is a clear error naming every master tried', async () => {
  const a = new FakeMaster('a', { watch: [info(TaskState.TASK_STATE_RUNNING), { fail: unavailable() }] });
  const h = harness(['a', 'b'], { a }, ['a', standbyRefusal('a', 'b')]);
  const client = await h.create();
  await assert.rejects(watchUntilEnd(client, 't1'), (e: unknown) => {
    assert.ok(e instanceof FailoverExhaustedError, String(e));
    assert.equal(e.code, 'FAILOVER_EXHAUSTED');
    assert.match(e.message, /^watch task t1: lost the master and found no active one in 2\.0 s; last try: no active master among 2: a: connect ECONNREFUSED; b: standby master: a:1:x is active/);
    return true;
  });
  assert.deepEqual(h.sleeps, [100, 200, 400, 400, 400, 400, 100], 'backing off to the cap, the last wait cut at the bound');
});

test('FailoverClient: a master that is picked but drops every stream at once is backed off from and bounded, not spun on', async () => {
  const a = new FakeMaster('a', { logs: [{ fail: unavailable() }] });
  const h = harness(['a', 'b'], { a }, ['a']);
  const client = await h.create();
  await assert.rejects(printLogs(client.streamLogs('t1'), new PassThrough(), new PassThrough()), FailoverExhaustedError);
  assert.ok(a.calls > 3 && a.calls < 15, `${a.calls} streams opened`);
  assert.equal(h.sleeps.reduce((s, x) => s + x, 0), 2000);
});

test('FailoverClient: with one master, or an error that is not a loss, nothing moves: the error is the caller\'s', async () => {
  const lost = unavailable();
  const one = harness(['a'], { a: new FakeMaster('a', { logs: [chunk('x'), { fail: lost }] }) }, ['a']);
  await assert.rejects(printLogs((await one.create()).streamLogs('t1'), new PassThrough(), new PassThrough()), (e) => e === lost);
  assert.deepEqual(one.notes, []);

  const notFound = new MasterCallError('get task t1', grpcError(status.NOT_FOUND, 'no task t1'));
  const two = harness(['a', 'b'], { a: new FakeMaster('a', { task: notFound }) }, ['a']);
  await assert.rejects((await two.create()).getTask('t1'), (e) => e === notFound);
  assert.deepEqual(two.notes, []);
});

test('FailoverClient: a unary call (getTask, cancelTask) lost with its master is sent again to the next', async () => {
  const a = new FakeMaster('a', { task: unavailable() });
  const b = new FakeMaster('b', { task: info(TaskState.TASK_STATE_CANCELLED) });
  const h = harness(['a', 'b'], { a, b }, ['a', 'b']);
  const client = await h.create();
  assert.equal((await client.cancelTask('t1', 'x')).state, TaskState.TASK_STATE_CANCELLED);
  assert.equal(client.current, b);
  client.close();
  client.close();
  assert.equal(b.closed, true);
});

test('FailoverClient: an attached run losing its log and its watch together moves once, with one note, and both go on', async () => {
  const a = new FakeMaster('a', {
    logs: [chunk('one\n', LogStream.LOG_STREAM_STDOUT, 1), { fail: unavailable() }],
    watch: [info(TaskState.TASK_STATE_RUNNING), { fail: unavailable() }],
  });
  const b = new FakeMaster('b', { logs: [chunk('one\ntwo\n')], watch: [info(TaskState.TASK_STATE_RUNNING), info(TaskState.TASK_STATE_SUCCEEDED)] });
  const h = harness(['a', 'b'], { a, b }, ['a', 'b']);
  const client = await h.create();
  const stdout = new PassThrough();
  const [, end] = await Promise.all([
    printLogs(client.streamLogs('t1', { follow: true }), stdout, new PassThrough()),
    watchUntilEnd(client, 't1'),
  ]);
  assert.equal(h.notes.length, 1, h.notes.join('\n'));
  assert.equal(end?.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.equal(stdout.read()?.toString(), 'one\ntwo\n');
  assert.equal(client.current, b);
});

test('FailoverClient: a detach (the signal) while looking for a master ends the follow at once, without a note', async () => {
  const a = new FakeMaster('a', { watch: [info(TaskState.TASK_STATE_RUNNING), { fail: unavailable() }] });
  const ac = new AbortController();
  let picks = 0;
  const client = await FailoverClient.create({
    masters: ['a', 'b'],
    pick: async () => {
      if (picks++ === 0) return 'a';
      ac.abort(); // the user detaches while the standby still refuses
      throw standbyRefusal('a', 'b');
    },
    connect: () => a,
    sleep: (ms, signal) => (signal?.aborted ? Promise.reject(new Error('sleep aborted')) : Promise.resolve()),
    now: () => 0,
    onMove: (n) => assert.fail(n),
  });
  const end = await watchUntilEnd(client, 't1', { signal: ac.signal });
  assert.equal(end, undefined);
  assert.equal(picks, 2);
});
