// The pure rules of exec at the master (targets, bounds, event lines), the session table's bounds
// and attach refusals, and the CLI's terminal handling with a fake terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import {
  execEndedEvent, execStartedEvent, parseExecTarget, validateExecInput, validateExecStart,
} from '../../src/master/exec-rules.js';
import { ExecSessions, HostileAttachError } from '../../src/master/exec-sessions.js';
import type { ExecStart } from '../../src/protocol/gen/hivemind/v1/common.js';
import { EXEC_BOUNDS } from '../../src/protocol/exec-rules.js';
import { ExecTerminal, terminalSize } from '../../src/cli/exec-terminal.js';
import { checkExecFlags } from '../../src/cli/commands/exec-command.js';

const start = (over: Partial<ExecStart> = {}): ExecStart => ({ target: 'x', command: ['sh'], tty: false, stdin: false, size: undefined, ...over });

test('a target is a task id, a service NAME (replica 0) or NAME/REPLICA; anything else is refused by name', () => {
  assert.deepEqual(parseExecTarget('0123456789abcdef'), { kind: 'task', taskId: '0123456789abcdef' });
  assert.deepEqual(parseExecTarget(' web '), { kind: 'replica', service: 'web', replica: 0 });
  assert.deepEqual(parseExecTarget('web/3'), { kind: 'replica', service: 'web', replica: 3 });
  assert.deepEqual(parseExecTarget('0123456789abcdef/1'), { kind: 'replica', service: '0123456789abcdef', replica: 1 });
  for (const bad of ['', 'Web', 'web/', 'web/01', 'web/-1', 'web/64', 'web/1/2', 'a b', '/1', 'x'.repeat(64)]) {
    assert.throws(() => parseExecTarget(bad), /neither a task id .* nor a service NAME or NAME\/REPLICA/, bad);
  }
  assert.throws(() => parseExecTarget('\u001b[2J'), (e: Error) => !e.message.includes('\u001b'));
});

test('a start is bounded: 1..64 arguments, 8 KiB, a non-empty program, a 1..1000 terminal with -t; the target is not passed on', () => {
  assert.deepEqual(validateExecStart(start({ command: ['ls', '-l'] })), { target: '', command: ['ls', '-l'], tty: false, stdin: false, size: undefined });
  assert.deepEqual(validateExecStart(start({ tty: true, size: { cols: 1000, rows: 1 } })).size, { cols: 1000, rows: 1 });
  assert.equal(validateExecStart(start({ size: { cols: 0, rows: 0 } })).size, undefined, 'no size without a tty');
  assert.equal(validateExecStart(start({ command: Array(EXEC_BOUNDS.maxArgs).fill('a') })).command.length, EXEC_BOUNDS.maxArgs);
  assert.throws(() => validateExecStart(start({ command: [] })), /0 arguments; 1 to 64 are allowed/);
  assert.throws(() => validateExecStart(start({ command: Array(EXEC_BOUNDS.maxArgs + 1).fill('a') })), /65 arguments/);
  assert.throws(() => validateExecStart(start({ command: ['x'.repeat(EXEC_BOUNDS.maxCommandBytes + 1)] })), /8193 bytes, over the limit of 8192/);
  assert.throws(() => validateExecStart(start({ command: [''] })), /program\) is empty/);
  assert.throws(() => validateExecStart(start({ command: ['a\0b'] })), /NUL/);
  assert.throws(() => validateExecStart(start({ tty: true })), /terminal size is required/);
  assert.throws(() => validateExecStart(start({ tty: true, size: { cols: 1001, rows: 5 } })), /terminal size 1001x5 is out of bounds \(1\.\.1000 columns and rows\)/);
  assert.throws(() => validateExecStart(start({ tty: true, size: { cols: 5, rows: 0 } })), /terminal size 5x0 is out of bounds/);
});

test('inputs after the start: stdin within 64 KiB and only with -i, resizes only with -t, never a second start', () => {
  const i = { tty: true, stdin: true };
  validateExecInput({ input: { $case: 'stdin', value: Buffer.alloc(EXEC_BOUNDS.maxStdinBytes) } }, i);
  validateExecInput({ input: { $case: 'stdinEof', value: true } }, i);
  validateExecInput({ input: { $case: 'resize', value: { cols: 60, rows: 20 } } }, i);
  assert.throws(() => validateExecInput({ input: { $case: 'stdin', value: Buffer.alloc(EXEC_BOUNDS.maxStdinBytes + 1) } }, i), /65537 bytes, over the limit of 65536/);
  assert.throws(() => validateExecInput({ input: { $case: 'stdin', value: Buffer.from('x') } }, { tty: false, stdin: false }), /did not ask for stdin/);
  assert.throws(() => validateExecInput({ input: { $case: 'resize', value: { cols: 60, rows: 20 } } }, { tty: false, stdin: true }), /without a terminal/);
  assert.throws(() => validateExecInput({ input: { $case: 'resize', value: { cols: 60, rows: 2000 } } }, i), /terminal size 60x2000 is out of bounds/);
  assert.throws(() => validateExecInput({ input: { $case: 'start', value: start() } }, i), /second start/);
  assert.throws(() => validateExecInput({ input: undefined }, i), /empty input/);
});

test('the task event lines name the command (cut, quoted where needed) and the exit', () => {
  assert.equal(execStartedEvent(['top', '-d', '1'], true), 'exec started: top -d 1 (tty)');
  assert.equal(execStartedEvent(['sh', '-c', 'echo hi; exit 3'], false), 'exec started: sh -c "echo hi; exit 3"');
  assert.ok(execStartedEvent(['x'.repeat(5000)], false).length < 200);
  assert.equal(execEndedEvent(0, 3240), 'exec ended: exit 0 after 3.2 s');
  assert.equal(execEndedEvent(255, 500, 'lost the node n1: its connection closed'), 'exec ended: exit 255 after 0.5 s (lost the node n1: its connection closed)');
});

test('the session table holds 64 sessions in all and 4 per task; only the opening node attaches, once', async () => {
  const s = new ExecSessions<string>({ total: 6, perTask: 4 });
  const open = Array.from({ length: 4 }, () => s.open('n1', 't1'));
  assert.throws(() => s.open('n1', 't1'), /task t1 has 4 exec sessions open/);
  s.open('n1', 't2');
  s.open('n2', 't3');
  assert.throws(() => s.open('n1', 't4'), /6 exec sessions are open on this master/);
  open[0]!.release();
  open[0]!.release();
  const again = s.open('n1', 't1');
  assert.match(again.id, /^[0-9a-f]{32}$/);

  const waiting = again.attached(1000, new AbortController().signal);
  assert.throws(() => s.attach('n2', again.id, 'stream-from-n2'), (e: unknown) => e instanceof HostileAttachError && /opened on another node/.test(e.message) && e.refusal.code === 'PERMISSION_DENIED');
  assert.throws(() => s.attach('n1', 'f'.repeat(32), 'x'), (e: unknown) => e instanceof HostileAttachError && e.refusal.code === 'NOT_FOUND');
  assert.deepEqual(s.attach('n1', again.id, 'stream-from-n1'), { taskId: 't1' });
  assert.equal(await waiting, 'stream-from-n1');
  assert.throws(() => s.attach('n1', again.id, 'x'), (e: unknown) => e instanceof HostileAttachError && /attached already/.test(e.message));
  again.release();
  assert.throws(() => s.attach('n1', again.id, 'x'), (e: unknown) => e instanceof HostileAttachError && /unknown, timed out or ended/.test(e.message));

  const late = open[1]!;
  await assert.rejects(late.attached(30, new AbortController().signal), /did not open exec session .* within 0 s/);
  const ac = new AbortController();
  const aborted = open[2]!.attached(5000, ac.signal);
  ac.abort(new Error('client gone'));
  await assert.rejects(aborted, /client gone/);
});

class FakeTty extends EventEmitter {
  isTTY = true;
  isRaw = false;
  columns = 100;
  rows = 30;
  modes: boolean[] = [];
  setRawMode(m: boolean) {
    this.isRaw = m;
    this.modes.push(m);
  }
}

test('the exec terminal: raw mode on, sizes within 1..1000, each resize sent once, the mode restored once on any way out', () => {
  assert.deepEqual(terminalSize({}), { cols: 80, rows: 24 });
  assert.deepEqual(terminalSize({ columns: 5000, rows: 0.5 }), { cols: 1000, rows: 1 });
  const tty = new FakeTty();
  const proc = new EventEmitter();
  const term = new ExecTerminal(tty, tty, proc as never, true);
  assert.equal(tty.isRaw, true);
  assert.deepEqual(term.size, { cols: 100, rows: 30 });
  const sent: unknown[] = [];
  const startSize = term.size;
  // Resized while the session was opening (before started): sent as soon as it is watched.
  tty.columns = 90;
  tty.emit('resize');
  term.watch((s) => sent.push(s), startSize);
  assert.deepEqual(sent, [{ cols: 90, rows: 30 }]);
  tty.columns = 60;
  tty.rows = 20;
  tty.emit('resize');
  proc.emit('SIGWINCH');
  assert.deepEqual(sent, [{ cols: 90, rows: 30 }, { cols: 60, rows: 20 }]);
  proc.emit('exit');
  term.restore();
  assert.deepEqual(tty.modes, [true, false], 'raw mode off exactly once');
  assert.equal(tty.listenerCount('resize') + proc.listenerCount('SIGWINCH') + proc.listenerCount('exit'), 0);
});

test('the CLI refuses exec without a command, and -t when stdin is not a terminal', () => {
  assert.throws(() => checkExecFlags([], {}, true), /no command given/);
  assert.throws(() => checkExecFlags(['top'], { tty: true }, false), /-t asks for a terminal, but stdin is not a terminal/);
  checkExecFlags(['top'], { tty: true, interactive: true }, true);
  checkExecFlags(['cat'], { interactive: true }, false);
});
