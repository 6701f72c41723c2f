// The master's rules for what a node's update may do to a task (states only move forward,
// SUCCEEDED needs a stored result) and the size bound of a result upload: pure, no I/O.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { RUNNER_DEFAULTS } from '../../src/runtime/container-spec.js';
import { MAX_OUTPUT_ENTRIES, gzipBound, resultUploadBound } from '../../src/master/result-bound.js';
import { SPEC_LIMITS } from '../../src/protocol/task-spec-rules.js';
import { decideNodeUpdate, stateRank } from '../../src/master/task-transitions.js';

const S = TaskState;

test('the lifecycle order is QUEUED → ASSIGNED → ACCEPTED → PULLING → RUNNING → UPLOADING → terminal', () => {
  const order = [S.TASK_STATE_QUEUED, S.TASK_STATE_ASSIGNED, S.TASK_STATE_ACCEPTED, S.TASK_STATE_PULLING, S.TASK_STATE_RUNNING, S.TASK_STATE_UPLOADING, S.TASK_STATE_SUCCEEDED];
  for (let i = 1; i < order.length; i++) assert.ok(stateRank(order[i]!)! > stateRank(order[i - 1]!)!, `${S[order[i]!]} after ${S[order[i - 1]!]}`);
  assert.equal(stateRank(S.TASK_STATE_FAILED), stateRank(S.TASK_STATE_SUCCEEDED));
  assert.equal(stateRank(S.TASK_STATE_CANCELLED), stateRank(S.TASK_STATE_SUCCEEDED));
  assert.equal(stateRank(S.TASK_STATE_REJECTED), undefined);
  assert.equal(stateRank(99 as TaskState), undefined);
});

test('a node update: forward or repeated live states apply, backwards ones are ignored', () => {
  const kind = (from: TaskState, to: TaskState, stored = false) => decideNodeUpdate(from, to, stored).kind;
  // The worker's own flow, including pull-progress ticks that repeat PULLING.
  assert.equal(kind(S.TASK_STATE_ASSIGNED, S.TASK_STATE_ACCEPTED), 'apply');
  assert.equal(kind(S.TASK_STATE_ACCEPTED, S.TASK_STATE_PULLING), 'apply');
  assert.equal(kind(S.TASK_STATE_PULLING, S.TASK_STATE_PULLING), 'apply');
  assert.equal(kind(S.TASK_STATE_PULLING, S.TASK_STATE_RUNNING), 'apply');
  assert.equal(kind(S.TASK_STATE_RUNNING, S.TASK_STATE_UPLOADING), 'apply');
  assert.equal(kind(S.TASK_STATE_ASSIGNED, S.TASK_STATE_UPLOADING), 'apply', 'skipping states is forward');
  // Backwards (e.g. a worker that re-runs an attempt after a crash: harmless, not applied).
  const back = decideNodeUpdate(S.TASK_STATE_RUNNING, S.TASK_STATE_ACCEPTED, false);
  assert.deepEqual(back, { kind: 'ignore', reason: 'states only move forward: RUNNING → ACCEPTED is backwards' });
  assert.equal(kind(S.TASK_STATE_UPLOADING, S.TASK_STATE_PULLING), 'ignore');
});

test('REJECTED only answers an assignment; FAILED and CANCELLED end any live state', () => {
  assert.equal(decideNodeUpdate(S.TASK_STATE_ASSIGNED, S.TASK_STATE_REJECTED, false).kind, 'apply');
  for (const from of [S.TASK_STATE_ACCEPTED, S.TASK_STATE_RUNNING, S.TASK_STATE_UPLOADING]) {
    assert.equal(decideNodeUpdate(from, S.TASK_STATE_REJECTED, false).kind, 'ignore', `REJECTED after ${S[from]}`);
  }
  for (const from of [S.TASK_STATE_ASSIGNED, S.TASK_STATE_ACCEPTED, S.TASK_STATE_PULLING, S.TASK_STATE_RUNNING, S.TASK_STATE_UPLOADING]) {
    assert.equal(decideNodeUpdate(from, S.TASK_STATE_FAILED, false).kind, 'apply');
    assert.equal(decideNodeUpdate(from, S.TASK_STATE_CANCELLED, false).kind, 'apply');
  }
});

test('SUCCEEDED needs a stored result; a finished task takes no update; a node cannot set QUEUED', () => {
  assert.equal(decideNodeUpdate(S.TASK_STATE_UPLOADING, S.TASK_STATE_SUCCEEDED, true).kind, 'apply');
  const without = decideNodeUpdate(S.TASK_STATE_RUNNING, S.TASK_STATE_SUCCEEDED, false);
  assert.equal(without.kind, 'refuse');
  assert.ok(without.kind === 'refuse' && without.code === 'FAILED_PRECONDITION' && /upload the result/.test(without.reason));
  for (const done of [S.TASK_STATE_SUCCEEDED, S.TASK_STATE_FAILED, S.TASK_STATE_CANCELLED]) {
    assert.equal(decideNodeUpdate(done, S.TASK_STATE_RUNNING, true).kind, 'ignore');
    assert.equal(decideNodeUpdate(done, S.TASK_STATE_FAILED, true).kind, 'ignore');
  }
  for (const bad of [S.TASK_STATE_QUEUED, S.TASK_STATE_ASSIGNED, S.TASK_STATE_UNSPECIFIED, 99 as TaskState]) {
    const d = decideNodeUpdate(S.TASK_STATE_RUNNING, bad, false);
    assert.ok(d.kind === 'refuse' && d.code === 'INVALID_ARGUMENT' && /cannot set task state/.test(d.reason), String(bad));
  }
});

test('result upload bound: the cap plus tar headers and padding for every entry, gzipped without compression', () => {
  assert.equal(MAX_OUTPUT_ENTRIES, RUNNER_DEFAULTS.maxEntries, 'the master assumes the node\'s entry cap');
  const MiB = 1024 ** 2;
  const oneMiB = resultUploadBound(MiB);
  assert.ok(oneMiB > MiB + MAX_OUTPUT_ENTRIES * 1024 && oneMiB < 100 * MiB, String(oneMiB));
  assert.equal(resultUploadBound(0), resultUploadBound(SPEC_LIMITS.maxOutputBytes), 'an unset cap falls back to the largest a task may ask for');
  assert.ok(resultUploadBound(2 * MiB) > oneMiB);
  // gzip of incompressible data stays within gzipBound.
  for (const n of [0, 1, 1000, 70_000, 3 * MiB]) {
    const gz = gzipSync(randomBytes(n), { level: 6 }).length;
    assert.ok(gz <= gzipBound(n), `gzip of ${n} random bytes is ${gz} > ${gzipBound(n)}`);
  }
});
