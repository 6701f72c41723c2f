// What the CLI prints for humans from strings a hostile node or client chose: terminal controls are
// shown escaped, never obeyed; --json stays the same JSON value with those characters escaped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { terminalSafe, terminalSafeJson } from '../../src/cli/terminal-text.js';
import { describeOutcome, formatNodeTable, formatTask, formatTaskTable } from '../../src/cli/task-format.js';
import { NodeInfo, TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { LimitKind, OutcomeKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { recordHostile } from '../helpers/fault-ledger.js';

// Window title, clear screen, red, an 8-bit CSI, right-to-left override, a carriage return.
export const HOSTILE = '\u001b]0;owned\u0007\u001b[2J\u001b[31mred\u009b31m\u202eevil\rX\u0000\u007f\u2066';
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

test('terminalSafe shows every control as an escape, keeps ordinary text, and is idempotent', () => {
  assert.equal(terminalSafe(HOSTILE), '\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\x9b31m\\u202eevil\\rX\\x00\\x7f\\u2066');
  assert.equal(terminalSafe('a\nb\tc'), 'a\\nb\\tc');
  assert.equal(terminalSafe('a\nb\tc\rd', { multiline: true }), 'a\nb\tc\\rd');
  assert.equal(terminalSafe('naïve 日本 🐝 C:\\path'), 'naïve 日本 🐝 C:\\path');
  assert.equal(terminalSafe(terminalSafe(HOSTILE)), terminalSafe(HOSTILE));
  for (let c = 0; c < 0x3000; c++) {
    const out = terminalSafe(String.fromCharCode(c));
    assert.ok(!RAW_CONTROL.test(out), `U+${c.toString(16)} came through as ${JSON.stringify(out)}`);
  }
});

test('terminalSafeJson is the same JSON value with no raw control inside its strings', () => {
  const value = { name: HOSTILE, list: [HOSTILE, 1, null], [HOSTILE]: 'key' };
  const text = terminalSafeJson(value);
  assert.deepEqual(JSON.parse(text), value);
  assert.ok(!RAW_CONTROL.test(text), text);
  assert.equal(terminalSafeJson({ a: 'plain' }), JSON.stringify({ a: 'plain' }, null, 2));
});

test('nodes, tasks and get render hostile names, images, reasons and messages escaped', () => {
  const node = NodeInfo.fromPartial({ nodeId: `n-${HOSTILE}`, name: HOSTILE, online: true, taskIds: [] });
  const outcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: HOSTILE, durationMs: 5, resultSize: 0, resultSha256: '' };
  const task = TaskInfo.fromPartial({
    taskId: 't-1', state: TaskState.TASK_STATE_FAILED, nodeId: HOSTILE, attempt: 1, maxAttempts: 3,
    spec: { image: `img${HOSTILE}`, command: ['sh', HOSTILE], env: new Map() }, outcome,
    events: [{ atMs: 1, state: TaskState.TASK_STATE_FAILED, nodeId: HOSTILE, message: HOSTILE }],
  });
  const queued = TaskInfo.fromPartial({ taskId: 't-2', state: TaskState.TASK_STATE_QUEUED, queueReason: HOSTILE, spec: { image: 'x', command: [], env: new Map() } });
  const outputs = { nodes: formatNodeTable([node]), tasks: formatTaskTable([task, queued]), get: formatTask(task), outcome: describeOutcome(outcome) };
  const leaked = Object.entries(outputs).filter(([, text]) => RAW_CONTROL.test(text.replace(/\n/g, '')));
  recordHostile('CLI: terminal controls in node names, images, reasons and outcome messages (unit)', leaked.length, Object.keys(outputs).length);
  assert.deepEqual(leaked, []);
  assert.match(outputs.nodes, /\\x1b\]0;owned\\x07\\x1b\[2J/);
  assert.match(outputs.get, /outcome {3}exited, exit 1, 5ms, \\x1b\]0;owned/);
  assert.match(outputs.tasks, /\\x1b\[31mred/);
  // One line per row: a newline or carriage return in a field cannot forge another row.
  assert.equal(formatTaskTable([TaskInfo.fromPartial({ taskId: 'a', state: TaskState.TASK_STATE_QUEUED, queueReason: 'x\nFAKE ROW' })]).split('\n').length, 2);
});

test('nodes: the ENGINE column names each node\'s engine and the limits it cannot enforce; an older node is docker', () => {
  const rows = formatNodeTable([
    NodeInfo.fromPartial({ nodeId: 'old', name: 'old', facts: {} }),
    NodeInfo.fromPartial({ nodeId: 'pm', name: 'pm', facts: { engine: 'podman' } }),
    NodeInfo.fromPartial({ nodeId: 'rl', name: 'rl', facts: { engine: 'podman-rootless', unenforcedLimits: [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS] } }),
  ]).split('\n');
  assert.match(rows[0]!, /GPUS +ENGINE +ISOLATION/);
  assert.match(rows[1]!, /^old .* docker +runc/);
  assert.match(rows[2]!, /^pm .* podman +runc/);
  assert.match(rows[3]!, /^rl .* podman-rootless \(no cpus\/memory\/pids limits\) +runc/);
});
