// The node's exec sessions with fakes: refusals (off, not running, bounds, too many sessions),
// the relay (stdin in order, EOF, resize, output cut to 64 KiB and paused on a full stream),
// protocol errors from the master, and a session ending with its task or the master's stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/logger.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { FakeExecChannel, FakeExecProcess } from '../helpers/fake-exec.js';
import {
  EXEC_LIMITS,
  EXEC_OFF_MESSAGE,
  ExecSessions,
  TASK_ENDED_MESSAGE,
  execRefusal,
  type ExecSessionEnd,
  type ExecSessionRecord,
} from '../../src/worker/exec-sessions.js';
import type { ExecRequest } from '../../src/worker/contracts.js';
import type { ExecStart } from '../../src/protocol/gen/hivemind/v1/common.js';
import { EXEC_BOUNDS } from '../../src/protocol/exec-rules.js';

let ids = 0;
const nextId = () => (++ids).toString(16).padStart(32, '0');

function start(over: Partial<ExecStart> = {}): ExecStart {
  return { target: '', command: ['sh'], tty: false, stdin: true, size: undefined, ...over };
}

async function until(what: string, check: () => boolean, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface Harness {
  sessions: ExecSessions;
  channels: FakeExecChannel[];
  procs: FakeExecProcess[];
  requests: ExecRequest[];
  tasks: Map<string, AbortController>;
  history: { started: ExecSessionRecord[]; ended: Map<string, ExecSessionEnd> };
  open(taskId: string, s?: ExecStart): FakeExecChannel;
}

function harness(opts: { allowed?: boolean; execFails?: Error } = {}): Harness {
  const channels: FakeExecChannel[] = [];
  const procs: FakeExecProcess[] = [];
  const requests: ExecRequest[] = [];
  const tasks = new Map<string, AbortController>([['t1', new AbortController()], ['t2', new AbortController()]]);
  const history = { started: [] as ExecSessionRecord[], ended: new Map<string, ExecSessionEnd>() };
  const sessions = new ExecSessions({
    allowed: opts.allowed ?? true,
    logger: silentLogger(),
    clock: { now: () => 1_000 },
    task: (taskId) => (tasks.has(taskId) ? { signal: tasks.get(taskId)!.signal } : undefined),
    exec: async (_taskId, _attempt, request) => {
      requests.push(request);
      if (opts.execFails) throw opts.execFails;
      const p = new FakeExecProcess();
      procs.push(p);
      return p;
    },
    openChannel: () => {
      const ch = new FakeExecChannel();
      channels.push(ch);
      return ch;
    },
    recorder: { started: (r) => history.started.push(r), ended: (id, e) => history.ended.set(id, e) },
  });
  return {
    sessions,
    channels,
    procs,
    requests,
    tasks,
    history,
    open: (taskId, s = start()) => {
      sessions.open({ sessionId: nextId(), taskId, attempt: 1, start: s });
      return channels.at(-1)!;
    },
  };
}

test('a session relays stdin in order, its end, resizes and output, then the exit code; recorded in the history', async () => {
  const h = harness();
  const ch = h.open('t1', start({ tty: true, size: { cols: 80, rows: 24 } }));
  await until('the command', () => h.procs.length === 1);
  const p = h.procs[0]!;
  assert.deepEqual(h.requests[0], { argv: ['sh'], tty: true, stdin: true, size: { cols: 80, rows: 24 } });
  ch.input({ $case: 'stdin', value: Buffer.from('a') });
  ch.input({ $case: 'stdin', value: Buffer.from('b') });
  ch.input({ $case: 'resize', value: { cols: 120, rows: 40 } });
  ch.input({ $case: 'stdinEof', value: true });
  await until('stdin closed', () => p.stdinClosed);
  assert.equal(Buffer.concat(p.stdin).toString(), 'ab');
  assert.deepEqual(p.sizes, [{ cols: 120, rows: 40 }]);
  p.say('stdout', 'out');
  p.say('stderr', 'err');
  p.finish(3);
  await ch.closed;
  assert.equal(ch.attached(), h.history.started[0]!.sessionId);
  assert.equal(ch.text('stdout'), 'out');
  assert.equal(ch.text('stderr'), 'err');
  assert.deepEqual(ch.exit(), { code: 3, error: '' });
  assert.ok(ch.ended);
  assert.deepEqual(h.history.started[0], { sessionId: h.history.started[0]!.sessionId, taskId: 't1', attempt: 1, startedAt: 1_000, command: ['sh'], tty: true });
  assert.deepEqual(h.history.ended.get(h.history.started[0]!.sessionId), { endedAt: 1_000, exitCode: 3, error: '' });
  assert.deepEqual(h.sessions.counters, { started: 1, refused: 0, active: 0 });
});

test('output is cut into 64 KiB messages, and the command is paused while the stream is full', async () => {
  const h = harness();
  const ch = h.open('t1');
  await until('the command', () => h.procs.length === 1);
  const p = h.procs[0]!;
  ch.full = true;
  p.say('stdout', Buffer.alloc(EXEC_LIMITS.maxOutputChunk * 2 + 10, 0x61));
  assert.deepEqual(ch.outputChunks(), [65536, 65536, 10]);
  assert.ok(p.paused, 'a full stream pauses the command');
  ch.drained();
  assert.ok(!p.paused, 'a drained stream resumes it');
  p.finish(0);
  await ch.closed;
});

test('with exec off: attach, exit 126 with the reason, nothing runs; counted as refused', async () => {
  const h = harness({ allowed: false });
  const ch = h.open('t1');
  await ch.closed;
  assert.ok(ch.attached());
  assert.deepEqual(ch.exit(), { code: 126, error: EXEC_OFF_MESSAGE });
  assert.equal(h.requests.length, 0);
  assert.deepEqual(h.sessions.counters, { started: 0, refused: 1, active: 0 });
  assert.equal(h.history.ended.get(h.history.started[0]!.sessionId)?.exitCode, 126);
});

test('a task not running here, or a command that cannot run, ends with 126 and why', async () => {
  const h = harness();
  const ch = h.open('gone');
  await ch.closed;
  assert.deepEqual(ch.exit(), { code: 126, error: 'task gone is not running on this node' });
  const failing = harness({ execFails: new Error('exec: "nope": executable file not found in $PATH') });
  const ch2 = failing.open('t1', start({ command: ['nope'] }));
  await ch2.closed;
  assert.deepEqual(ch2.exit(), { code: 126, error: 'exec: "nope": executable file not found in $PATH' });
  assert.equal(failing.sessions.active, 0);
});

test('hostile commands are refused with their bound: argument count, size, NUL, terminal size', async () => {
  const ctx = { allowed: true, canExec: true, taskRunning: true, taskSessions: 0, nodeSessions: 0, taskId: 't1' };
  const cases: [string, ExecStart, RegExp][] = [
    ['exec-no-args', start({ command: [] }), /0 arguments; 1 to 64/],
    ['exec-65-args', start({ command: Array.from({ length: 65 }, () => 'x') }), /65 arguments; 1 to 64/],
    ['exec-9k-command', start({ command: ['sh', 'x'.repeat(9 * 1024)] }), /9218 bytes, over the limit of 8192/],
    ['exec-nul-arg', start({ command: ['sh', 'a\0b'] }), /NUL byte/],
    ['exec-empty-program', start({ command: [''] }), /the command's first argument \(the program\) is empty/],
    ['exec-huge-terminal', start({ tty: true, size: { cols: 100_000, rows: 24 } }), /100000x24 is out of bounds/],
    ['exec-zero-terminal', start({ tty: true, size: { cols: 0, rows: 0 } }), /out of bounds/],
  ];
  for (const [name, s, want] of cases) {
    const got = execRefusal(s, ctx);
    recordHostile(name, got === undefined);
    assert.match(got ?? '(accepted)', want, name);
  }
  // And through the sessions: refused before anything runs.
  const h = harness();
  const ch = h.open('t1', start({ command: Array.from({ length: 65 }, () => 'x') }));
  await ch.closed;
  assert.equal(ch.exit()?.code, 126);
  assert.equal(h.requests.length, 0);
});

test('at most 4 sessions per task and 16 per node; a fifth on a task is refused, saying so', async () => {
  const h = harness();
  for (let i = 0; i < 4; i++) h.open('t1');
  await until('four commands', () => h.procs.length === 4);
  const fifth = h.open('t1');
  await fifth.closed;
  recordHostile('exec-fifth-session-on-a-task', fifth.exit()?.code !== 126);
  assert.deepEqual(fifth.exit(), { code: 126, error: 'task t1 already has 4 exec sessions; at most 4 at a time' });
  const node = execRefusal(start(), { allowed: true, canExec: true, taskRunning: true, taskSessions: 0, nodeSessions: 16, taskId: 't2' });
  recordHostile('exec-seventeenth-session-on-a-node', node === undefined);
  assert.equal(node, 'this node already has 16 exec sessions; at most 16 at a time');
  // Another task still gets one.
  h.open('t2');
  await until('a session on t2', () => h.procs.length === 5);
  h.sessions.closeAll('test over');
});

test('hostile input from the master: oversized stdin, a second start, stdin after its end: the command is killed, the exit says why', async () => {
  const cases: [string, (ch: FakeExecChannel) => void, RegExp][] = [
    ['exec-stdin-over-64k', (ch) => ch.input({ $case: 'stdin', value: Buffer.alloc(EXEC_BOUNDS.maxStdinBytes + 1) }), /protocol error: a stdin message of 65537 bytes, over the limit of 65536 per message/],
    ['exec-second-start', (ch) => ch.input({ $case: 'start', value: start() }), /a second start in the session/],
    ['exec-stdin-after-eof', (ch) => (ch.input({ $case: 'stdinEof', value: true }), ch.input({ $case: 'stdin', value: Buffer.from('x') })), /stdin after its end/],
    ['exec-resize-out-of-bounds', (ch) => ch.input({ $case: 'resize', value: { cols: 5000, rows: 1 } }), /5000x1 is out of bounds/],
    ['exec-empty-input', (ch) => ch.input(undefined), /an empty input message/],
  ];
  for (const [name, act, want] of cases) {
    const h = harness();
    const ch = h.open('t1');
    await until('the command', () => h.procs.length === 1);
    act(ch);
    await ch.closed;
    recordHostile(name, !h.procs[0]!.killed);
    assert.ok(h.procs[0]!.killed, name);
    assert.equal(ch.exit()?.code, 137, name);
    assert.match(ch.exit()?.error ?? '', want, name);
  }
});

test('the task ending kills its sessions: exit with "the task ended"', async () => {
  const h = harness();
  const ch = h.open('t1');
  await until('the command', () => h.procs.length === 1);
  h.tasks.get('t1')!.abort('cancelled');
  await ch.closed;
  assert.ok(h.procs[0]!.killed);
  assert.deepEqual(ch.exit(), { code: 137, error: TASK_ENDED_MESSAGE });
  assert.equal(h.sessions.active, 0);
  // A task that ended already takes no new session.
  const late = h.open('t1');
  await late.closed;
  assert.equal(late.exit()?.code, 126);
});

test("the master's stream ending kills the command; an idle session is left alone", async () => {
  const h = harness();
  const ch = h.open('t1');
  await until('the command', () => h.procs.length === 1);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(!h.procs[0]!.killed, 'idle is not dead');
  ch.masterGone(new Error('1 CANCELLED: client went away'));
  await ch.closed;
  assert.ok(h.procs[0]!.killed);
  assert.match(ch.exit()?.error ?? '', /the master's stream ended \(1 CANCELLED: client went away\)/);
});

test('a malformed session id is ignored: no stream is opened', () => {
  const h = harness();
  h.sessions.open({ sessionId: 'not-hex', taskId: 't1', attempt: 1, start: start() });
  recordHostile('exec-malformed-session-id', h.channels.length > 0);
  assert.equal(h.channels.length, 0);
});
