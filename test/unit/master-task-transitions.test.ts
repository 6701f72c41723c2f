// The master's rules for what a node's update may do to a task (states only move forward,
// SUCCEEDED needs a stored result) and the size bound of a result upload: pure, no I/O.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { RUNNER_DEFAULTS } from '../../src/runtime/container-spec.js';
import { DEFAULT_MAX_OUTPUT_BYTES, resultArchiveBound } from '../../src/protocol/result-bound.js';
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

test('result archive bound: the cap, 1/128 of it and 1 MiB; an honest archive of incompressible output fits', () => {
  const MiB = 1024 ** 2;
  assert.equal(RUNNER_DEFAULTS.maxOutputBytes, DEFAULT_MAX_OUTPUT_BYTES, 'an unset cap means the node default on both sides');
  assert.equal(resultArchiveBound(MiB), MiB + 8192 + MiB);
  assert.equal(resultArchiveBound(0), resultArchiveBound(DEFAULT_MAX_OUTPUT_BYTES));
  assert.ok(resultArchiveBound(64 * MiB) < 66 * MiB, 'the issue\'s 64 MiB upload for a 1 MiB cap is far outside');
  // A tar.gz of a cap's worth of random bytes in a few files stays within the bound.
  for (const n of [0, 1, 1000, 70_000, 3 * MiB]) {
    const tarish = Buffer.concat([Buffer.alloc(512), randomBytes(n), Buffer.alloc(1024 + (512 - (n % 512)) % 512)]);
    const gz = gzipSync(tarish, { level: 6 }).length;
    assert.ok(gz <= resultArchiveBound(Math.max(n, 1)), `gzip of a ${n}-byte file is ${gz} > ${resultArchiveBound(n)}`);
  }
});
